//! Image grids with row labels and captions: sample grids per class, galleries.

use super::{draw_error, ensure_fonts, VizError, FONT};
use crate::data::preprocess::resize_rgb;
use image::RgbImage;
use plotters::prelude::*;

/// One row of a grid: a label drawn at its left and its images.
pub struct GridRow {
    pub label: String,
    pub colour: (u8, u8, u8),
    pub images: Vec<RgbImage>,
    /// A line under each image (may be shorter than `images`; empty for none).
    pub captions: Vec<String>,
}

const LABEL_WIDTH: u32 = 170;
const GAP: u32 = 6;

/// Lay out rows of square thumbnails (`cell` pixels) with a label column; returns the image.
pub fn image_grid(
    title: &str,
    rows: &[GridRow],
    columns: usize,
    cell: u32,
) -> Result<RgbImage, VizError> {
    ensure_fonts()?;
    let title_height = 44;
    let caption_height = if rows.iter().any(|r| !r.captions.is_empty()) {
        22
    } else {
        0
    };
    let pitch = cell + caption_height + GAP;
    let width = LABEL_WIDTH + columns as u32 * (cell + GAP) + GAP;
    let height = title_height + rows.len() as u32 * pitch + GAP;
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let y = title_height + r as u32 * pitch;
        for (c, img) in row.images.iter().take(columns).enumerate() {
            let thumb = resize_rgb(img, cell, cell).map_err(draw_error)?;
            image::imageops::replace(
                &mut canvas,
                &thumb,
                i64::from(LABEL_WIDTH + c as u32 * (cell + GAP)),
                i64::from(y),
            );
        }
    }
    let (w, h) = canvas.dimensions();
    let mut buffer = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        root.draw(&Text::new(
            title.to_string(),
            (12, 10),
            (FONT, 22).into_font().style(FontStyle::Bold),
        ))
        .map_err(draw_error)?;
        for (r, row) in rows.iter().enumerate() {
            let top = title_height + r as u32 * pitch;
            for (c, caption) in row.captions.iter().take(columns).enumerate() {
                root.draw(&Text::new(
                    caption.clone(),
                    (
                        (LABEL_WIDTH + c as u32 * (cell + GAP)) as i32 + 2,
                        (top + cell + 3) as i32,
                    ),
                    (FONT, 14).into_font(),
                ))
                .map_err(draw_error)?;
            }
            let y = (top + cell / 2) as i32;
            let (cr, cg, cb) = row.colour;
            root.draw(&Rectangle::new(
                [(8, y - 16), (14, y + 16)],
                RGBColor(cr, cg, cb).filled(),
            ))
            .map_err(draw_error)?;
            root.draw(&Text::new(
                row.label.clone(),
                (22, y - 10),
                (FONT, 18).into_font().style(FontStyle::Bold),
            ))
            .map_err(draw_error)?;
            if row.images.is_empty() {
                root.draw(&Text::new(
                    "no images",
                    (LABEL_WIDTH as i32 + 10, y - 8),
                    (FONT, 16).into_font(),
                ))
                .map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)?;
    }
    RgbImage::from_raw(w, h, buffer).ok_or_else(|| VizError::Draw("buffer size".into()))
}

/// Stack figures vertically on a white background.
pub fn stack_vertically(parts: &[RgbImage]) -> RgbImage {
    let width = parts.iter().map(|p| p.width()).max().unwrap_or(1);
    let height = parts.iter().map(|p| p.height()).sum::<u32>().max(1);
    let mut out = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for part in parts {
        image::imageops::replace(&mut out, part, 0, i64::from(y));
        y += part.height();
    }
    out
}

/// A gallery of cases, one row per case (labelled and coloured by its class), one column per tile, written as
/// a PNG.
pub fn save_case_gallery<const N: usize>(
    path: &std::path::Path,
    title: &str,
    cases: &[(crate::data::Class, [RgbImage; N])],
    columns: &[&str; N],
) -> Result<(), VizError> {
    let rows: Vec<GridRow> = cases
        .iter()
        .map(|(class, tiles)| GridRow {
            label: class.to_string(),
            colour: super::CLASS_COLOURS[class.index()],
            images: tiles.to_vec(),
            captions: columns.iter().map(|c| c.to_string()).collect(),
        })
        .collect();
    super::save_png(&image_grid(title, &rows, N, 128)?, path)
}

/// The misclassified images, one row per true class (at most `per_class` each, the most confident mistakes first),
/// each captioned with the predicted class and its probability; `None` when every image was right.
pub fn misclassified_grid(
    classes: &[crate::data::Class],
    predictions: &[crate::metrics::predictions::Prediction],
    images: &[RgbImage],
    per_class: usize,
) -> Result<Option<RgbImage>, VizError> {
    let wrong = predictions.iter().filter(|p| !p.correct()).count();
    if wrong == 0 {
        return Ok(None);
    }
    let mut rows = Vec::new();
    for class in classes {
        let mut mistakes: Vec<(f32, usize)> = predictions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.true_class == *class && !p.correct())
            .map(|(i, p)| (p.confidence(classes), i))
            .collect();
        if mistakes.is_empty() {
            continue;
        }
        mistakes.sort_by(|a, b| b.0.total_cmp(&a.0));
        mistakes.truncate(per_class);
        rows.push(GridRow {
            label: class.to_string(),
            colour: super::CLASS_COLOURS[class.index() % super::CLASS_COLOURS.len()],
            images: mistakes
                .iter()
                .filter_map(|(_, i)| images.get(*i).cloned())
                .collect(),
            captions: mistakes
                .iter()
                .map(|(confidence, i)| {
                    format!(
                        "→ {} {:.0} %",
                        predictions[*i].predicted,
                        confidence * 100.0
                    )
                })
                .collect(),
        });
    }
    let columns = rows.iter().map(|r| r.images.len()).max().unwrap_or(1);
    let title = format!("Misclassified: {wrong} of {}", predictions.len());
    image_grid(&title, &rows, columns, 128).map(Some)
}
