//! Result figures: confusion matrices and training curves.

use super::{draw_error, ensure_fonts, VizError, FONT};
use image::RgbImage;
use plotters::prelude::*;

/// A confusion matrix: cells shaded by the row-normalised rate, each with its count and percentage.
pub fn confusion_matrix(
    title: &str,
    labels: &[&str],
    rows: &[Vec<u64>],
) -> Result<RgbImage, VizError> {
    ensure_fonts()?;
    let n = labels.len();
    let (cell, left, top) = (130u32, 150u32, 80u32);
    let (width, height) = (left + cell * n as u32 + 30, top + cell * n as u32 + 70);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.draw(&Text::new(
            title.to_string(),
            (16, 14),
            (FONT, 22).into_font().style(FontStyle::Bold),
        ))
        .map_err(draw_error)?;
        root.draw(&Text::new(
            "predicted →",
            (left as i32 + 4, top as i32 - 26),
            (FONT, 15).into_font(),
        ))
        .map_err(draw_error)?;
        root.draw(&Text::new(
            "true ↓",
            (16, top as i32 - 26),
            (FONT, 15).into_font(),
        ))
        .map_err(draw_error)?;
        for (r, row) in rows.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (c, count) in row.iter().enumerate() {
                let rate = if total > 0 {
                    *count as f64 / total as f64
                } else {
                    0.0
                };
                let (x, y) = (
                    (left + c as u32 * cell) as i32,
                    (top + r as u32 * cell) as i32,
                );
                let shade = (255.0 - 200.0 * rate) as u8;
                let fill = RGBColor(shade, (255.0 - 120.0 * rate) as u8, 255);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    fill.filled(),
                ))
                .map_err(draw_error)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    BLACK.mix(0.3),
                ))
                .map_err(draw_error)?;
                let ink = if rate > 0.55 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    format!("{count}"),
                    (x + 12, y + 40),
                    (FONT, 26).into_font().color(&ink),
                ))
                .map_err(draw_error)?;
                root.draw(&Text::new(
                    format!("{:.1}%", rate * 100.0),
                    (x + 12, y + 78),
                    (FONT, 16).into_font().color(&ink),
                ))
                .map_err(draw_error)?;
            }
            root.draw(&Text::new(
                labels[r].to_string(),
                (12, (top + r as u32 * cell + cell / 2) as i32 - 8),
                (FONT, 16).into_font(),
            ))
            .map_err(draw_error)?;
        }
        for (c, label) in labels.iter().enumerate() {
            let x = (left + c as u32 * cell) as i32 + 8;
            root.draw(&Text::new(
                label.to_string(),
                (x, (top + n as u32 * cell) as i32 + 10),
                (FONT, 16).into_font(),
            ))
            .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    RgbImage::from_raw(width, height, buffer).ok_or_else(|| VizError::Draw("buffer size".into()))
}

/// One curve of a training-curve panel.
pub struct Curve {
    pub label: String,
    pub colour: (u8, u8, u8),
    pub points: Vec<(f64, f64)>,
}

/// Two panels side by side (e.g. loss and accuracy per epoch), with vertical lines at stage boundaries.
pub fn curves(
    title: &str,
    panels: &[(&str, Vec<Curve>)],
    boundaries: &[(f64, String)],
) -> Result<RgbImage, VizError> {
    ensure_fonts()?;
    let (width, height) = (600 * panels.len().max(1) as u32, 440u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        let root = root
            .titled(title, (FONT, 22).into_font().style(FontStyle::Bold))
            .map_err(draw_error)?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, (name, curves)) in areas.iter().zip(panels) {
            let all: Vec<&(f64, f64)> = curves.iter().flat_map(|c| c.points.iter()).collect();
            let max_x = all.iter().map(|p| p.0).fold(1.0, f64::max);
            let max_y = all
                .iter()
                .map(|p| p.1)
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max)
                .max(1e-3)
                * 1.08;
            let mut chart = ChartBuilder::on(area)
                .margin(14)
                .x_label_area_size(38)
                .y_label_area_size(56)
                .caption(*name, (FONT, 17))
                .build_cartesian_2d(0.5f64..max_x + 0.5, 0f64..max_y)
                .map_err(draw_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch (all stages)")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .draw()
                .map_err(draw_error)?;
            for (x, label) in boundaries {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(*x, 0.0), (*x, max_y)],
                        BLACK.mix(0.35),
                    )))
                    .map_err(draw_error)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        label.clone(),
                        (*x + 0.1, max_y * 0.97),
                        (FONT, 13),
                    )))
                    .map_err(draw_error)?;
            }
            for curve in curves {
                let (r, g, b) = curve.colour;
                let colour = RGBColor(r, g, b);
                chart
                    .draw_series(LineSeries::new(
                        curve.points.clone(),
                        colour.stroke_width(2),
                    ))
                    .map_err(draw_error)?
                    .label(curve.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(
                        curve
                            .points
                            .iter()
                            .map(|p| Circle::new(*p, 3, colour.filled())),
                    )
                    .map_err(draw_error)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 14))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    RgbImage::from_raw(width, height, buffer).ok_or_else(|| VizError::Draw("buffer size".into()))
}
