//! Decoding image files into 3×u8 RGB buffers, the way torchvision's `ImageFolder` loader does
//! (`PIL.Image.open(path).convert("RGB")`), with limits that refuse decompression bombs before allocating.

use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The largest image we decode, in pixels (width × height). 64 megapixels is 8192×8192, far above any MRI slice;
/// a header that claims more is refused before any pixel buffer is allocated.
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// File extensions read as images (compared without case).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff"];

/// Why an image could not be decoded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{}: cannot read the file: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the file is empty (0 bytes)", path.display())]
    Empty { path: PathBuf },
    #[error("{}: not a supported image (JPEG, PNG, BMP, GIF or TIFF)", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}: {width}×{height} pixels exceeds the limit of {MAX_PIXELS} pixels", path.display())]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("{}: corrupt or truncated {format} data: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        format: String,
        message: String,
    },
    #[error(transparent)]
    Medical(#[from] super::medical::MedicalError),
}

impl DecodeError {
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            DecodeError::Io { path, .. }
            | DecodeError::Empty { path }
            | DecodeError::UnknownFormat { path }
            | DecodeError::TooLarge { path, .. }
            | DecodeError::Corrupt { path, .. } => path,
            DecodeError::Medical(e) => e.path(),
        }
    }
}

/// Whether a path has one of the [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        .unwrap_or(false)
}

/// Whether a dataset folder reads this file as one image: the [`IMAGE_EXTENSIONS`], and DICOM (`.dcm`, `.dicom`;
/// its first frame). NIfTI volumes hold many slices and are read by the commands that take files.
pub fn is_dataset_image(path: &Path) -> bool {
    has_image_extension(path)
        || super::medical::kind(path) == Some(super::medical::MedicalKind::Dicom)
            && path.extension().is_some()
}

/// Read and decode an image file into RGB8 (a DICOM file: its first frame, windowed).
pub fn decode_file(path: &Path) -> Result<RgbImage, DecodeError> {
    if super::medical::kind(path) == Some(super::medical::MedicalKind::Dicom) {
        let first = super::medical::dicom::read_slices(
            path,
            None,
            &super::medical::SliceSelection::List(vec![0]),
        )?;
        let slice = first
            .into_iter()
            .next()
            .ok_or_else(|| DecodeError::UnknownFormat {
                path: path.to_path_buf(),
            })?;
        return Ok(super::medical::gray_to_rgb(&slice.image));
    }
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes, path)
}

/// Decode image bytes into RGB8; `name` is used in errors (a path, or an upload's file name).
///
/// Conversions follow PIL's `convert("RGB")` where it is sensible: grayscale is copied to three channels, alpha
/// is dropped (not composited), palette images are expanded. 16-bit images are scaled to 8 bits (value / 257)
/// rather than clipped at 255 as PIL does, so a 16-bit scan keeps its contrast.
pub fn decode_bytes(bytes: &[u8], name: &Path) -> Result<RgbImage, DecodeError> {
    let reader = open_reader(bytes, name)?;
    let format = reader.format().ok_or_else(|| DecodeError::UnknownFormat {
        path: name.to_path_buf(),
    })?;
    check_complete(bytes, format, name)?;
    let image = reader.decode().map_err(|e| corrupt(name, format, e))?;
    Ok(match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// Read only the header: the image's width and height, with the same checks as [`decode_bytes`] short of
/// decoding the pixels.
pub fn probe_file(path: &Path) -> Result<(u32, u32), DecodeError> {
    if super::medical::kind(path) == Some(super::medical::MedicalKind::Dicom) {
        return Ok(decode_file(path)?.dimensions());
    }
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = open_reader(&bytes, path)?;
    let format = reader.format().ok_or_else(|| DecodeError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    check_complete(&bytes, format, path)?;
    reader
        .into_dimensions()
        .map_err(|e| corrupt(path, format, e))
}

fn check_complete(bytes: &[u8], format: ImageFormat, name: &Path) -> Result<(), DecodeError> {
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(DecodeError::Corrupt {
            path: name.to_path_buf(),
            format: "JPEG".into(),
            message: "the end-of-image marker is missing (the file was cut short)".into(),
        });
    }
    Ok(())
}

fn open_reader<'a>(
    bytes: &'a [u8],
    name: &Path,
) -> Result<ImageReader<Cursor<&'a [u8]>>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty {
            path: name.to_path_buf(),
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| DecodeError::Io {
            path: name.to_path_buf(),
            source,
        })?;
    let format = reader.format().ok_or_else(|| DecodeError::UnknownFormat {
        path: name.to_path_buf(),
    })?;
    check_size(bytes, format, name)?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    Ok(reader)
}

/// A mask PNG as 8-bit values at `side`×`side`: as stored when it has that size, else resized like
/// [`resize_mask`](super::preprocess::resize_mask) (bilinear, thresholded at half). Errors name the file.
pub fn read_mask(path: &Path, side: u32) -> Result<Vec<u8>, String> {
    let gray = image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_luma8();
    if gray.dimensions() == (side, side) {
        return Ok(gray.into_raw());
    }
    Ok(super::preprocess::resize_mask(&gray, side, side)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_raw())
}

/// A true mask at `side`×`side` as foreground flags (value ≥ 128).
pub fn read_binary_mask(path: &Path, side: u32) -> Result<Vec<bool>, String> {
    Ok(read_mask(path, side)?.iter().map(|v| *v >= 128).collect())
}

/// Refuse images whose header claims more than [`MAX_PIXELS`].
fn check_size(bytes: &[u8], format: ImageFormat, name: &Path) -> Result<(), DecodeError> {
    let probe = ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = probe
        .into_dimensions()
        .map_err(|e| corrupt(name, format, e))?;
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt {
            path: name.to_path_buf(),
            format: format_name(format),
            message: format!("the header gives an empty image ({width}×{height})"),
        });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeError::TooLarge {
            path: name.to_path_buf(),
            width,
            height,
        });
    }
    Ok(())
}

/// A JPEG ends with the EOI marker (FF D9), possibly followed by padding. The decoder we use fills a cut-short
/// scan with grey instead of failing, so a truncated file is recognised here, as PIL would refuse it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn format_name(format: ImageFormat) -> String {
    format!("{format:?}").to_uppercase()
}

fn corrupt(name: &Path, format: ImageFormat, error: image::ImageError) -> DecodeError {
    DecodeError::Corrupt {
        path: name.to_path_buf(),
        format: format_name(format),
        message: error.to_string(),
    }
}
