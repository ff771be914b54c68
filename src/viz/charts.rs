//! Bar charts and scatter plots with plotters on a bitmap.

use super::{draw_error, ensure_fonts, VizError, CLASS_COLOURS, FONT};
use image::RgbImage;
use plotters::prelude::*;

/// A group of bars: one label on the x axis and one value per series.
pub struct BarGroup {
    pub label: String,
    pub values: Vec<f64>,
}

/// A grouped bar chart with values written above the bars.
pub struct BarChart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: Vec<String>,
    pub groups: Vec<BarGroup>,
}

/// Draw a grouped bar chart into a new `width`×`height` image.
pub fn bar_chart(chart: &BarChart<'_>, width: u32, height: u32) -> Result<RgbImage, VizError> {
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    draw_bar_chart(chart, &mut buffer, width, height)?;
    RgbImage::from_raw(width, height, buffer).ok_or_else(|| VizError::Draw("buffer size".into()))
}

/// Draw a grouped bar chart into an RGB buffer of `width`×`height`.
pub fn draw_bar_chart(
    chart: &BarChart<'_>,
    buffer: &mut [u8],
    width: u32,
    height: u32,
) -> Result<(), VizError> {
    ensure_fonts()?;
    let root = BitMapBackend::with_buffer(buffer, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let groups = chart.groups.len().max(1);
    let max = chart
        .groups
        .iter()
        .flat_map(|g| g.values.iter().copied())
        .fold(1.0f64, f64::max);
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, (FONT, 22).into_font().style(FontStyle::Bold))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..groups as f64, 0f64..max * 1.15)
        .map_err(draw_error)?;
    let labels: Vec<String> = chart.groups.iter().map(|g| g.label.clone()).collect();
    plot.configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor();
            if (x - i - 0.5).abs() < 1e-6 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(chart.y_label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(draw_error)?;
    let series = chart.series.len().max(1) as f64;
    let bar = 0.8 / series;
    for (s, name) in chart.series.iter().enumerate() {
        let shade = series_colour(s);
        let rects: Vec<_> = chart
            .groups
            .iter()
            .enumerate()
            .filter_map(|(g, group)| {
                let value = *group.values.get(s)?;
                let x0 = g as f64 + 0.1 + bar * s as f64;
                Some((x0, value))
            })
            .collect();
        plot.draw_series(
            rects
                .iter()
                .map(|(x0, v)| Rectangle::new([(*x0, 0.0), (x0 + bar * 0.95, *v)], shade.filled())),
        )
        .map_err(draw_error)?
        .label(name.as_str())
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], shade.filled()));
        plot.draw_series(rects.iter().map(|(x0, v)| {
            Text::new(
                format!("{v}"),
                (x0 + bar * 0.2, v + max * 0.05),
                (FONT, 14).into_font(),
            )
        }))
        .map_err(draw_error)?;
    }
    if chart.series.len() > 1 {
        plot.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 15))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_error)?;
    }
    root.present().map_err(draw_error)
}

/// A scatter plot of points coloured by class.
pub fn class_scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, usize)],
    class_names: &[&str],
    width: u32,
    height: u32,
) -> Result<RgbImage, VizError> {
    ensure_fonts()?;
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.08;
        let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.08;
        let mut plot = ChartBuilder::on(&root)
            .caption(title, (FONT, 22).into_font().style(FontStyle::Bold))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)
            .map_err(draw_error)?;
        plot.configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(draw_error)?;
        for (class, name) in class_names.iter().enumerate() {
            let (r, g, b) = CLASS_COLOURS[class % CLASS_COLOURS.len()];
            let colour = RGBColor(r, g, b);
            plot.draw_series(
                points
                    .iter()
                    .filter(|p| p.2 == class)
                    .map(|p| Circle::new((p.0, p.1), 4, colour.mix(0.6).filled())),
            )
            .map_err(draw_error)?
            .label(*name)
            .legend(move |(x, y)| Circle::new((x + 6, y), 5, colour.filled()));
        }
        plot.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 15))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    RgbImage::from_raw(width, height, buffer).ok_or_else(|| VizError::Draw("buffer size".into()))
}

fn series_colour(index: usize) -> RGBColor {
    const SERIES: [(u8, u8, u8); 4] = [
        (45, 85, 140),
        (120, 170, 220),
        (230, 150, 40),
        (120, 120, 120),
    ];
    let (r, g, b) = SERIES[index % SERIES.len()];
    RGBColor(r, g, b)
}
