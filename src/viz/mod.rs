//! Figures: charts and image grids drawn into RGB buffers and saved as PNG. Drawing only reads results.

pub mod charts;
pub mod colormap;
pub mod grid;
pub mod masks;
pub mod plots;

use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The font family every figure uses (DejaVu Sans, embedded; see `assets/NOTICE`).
pub const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static DEJAVU_SANS_BOLD: &[u8] = include_bytes!("../../assets/DejaVuSans-Bold.ttf");

/// Why a figure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("{}: cannot write the figure: {message}", path.display())]
    Save { path: PathBuf, message: String },
}

/// Register the embedded font with plotters, once per process.
pub(crate) fn ensure_fonts() -> Result<(), VizError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            use plotters::style::{register_font, FontStyle};
            register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
                .map_err(|_| "embedded font is invalid".to_string())?;
            register_font(FONT, FontStyle::Bold, DEJAVU_SANS_BOLD)
                .map_err(|_| "embedded bold font is invalid".to_string())
        })
        .clone()
        .map_err(VizError::Draw)
}

pub(crate) fn draw_error<E: std::fmt::Display>(e: E) -> VizError {
    VizError::Draw(e.to_string())
}

/// Save a figure as PNG, creating the parent folder.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<(), VizError> {
    let fail = |message: String| VizError::Save {
        path: path.to_path_buf(),
        message,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    }
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| fail(e.to_string()))
}

/// One colour per class, in class-index order (glioma, meningioma, no tumour, pituitary).
pub const CLASS_COLOURS: [(u8, u8, u8); 4] =
    [(214, 69, 65), (52, 120, 198), (80, 160, 90), (230, 150, 40)];
