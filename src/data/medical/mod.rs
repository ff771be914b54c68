//! Clinical inputs: DICOM files and series, NIfTI volumes. Each yields named 8-bit grayscale slices that then go
//! through the same preprocessing as a JPEG (three equal channels, resize, normalise).
//!
//! Names say where a slice came from: `series/IM0001.dcm` (single frame), `scan.dcm#frame:3` (multi-frame, counted
//! from 0), `scan.nii.gz#axial:88` (plane and index after reorientation, counted from 0).

pub mod dicom;
pub mod nifti;

use image::GrayImage;
use std::path::{Path, PathBuf};

/// Which kind of clinical file a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedicalKind {
    Dicom,
    Nifti,
}

/// The kind a file name says (`.dcm`, `.dicom`, `.nii`, `.nii.gz`, any case).
pub fn kind_by_name(name: &Path) -> Option<MedicalKind> {
    let name = name.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        Some(MedicalKind::Nifti)
    } else if name.ends_with(".dcm") || name.ends_with(".dicom") {
        Some(MedicalKind::Dicom)
    } else {
        None
    }
}

/// The kind of `path` by its name or, for a file without an image extension, by the `DICM` marker at byte 128
/// (image files are not opened to look).
pub fn kind(path: &Path) -> Option<MedicalKind> {
    kind_by_name(path).or_else(|| {
        let sniff = !crate::data::decode::has_image_extension(path) && path.is_file();
        (sniff && dicom::file_has_marker(path)).then_some(MedicalKind::Dicom)
    })
}

/// A slice ready for preprocessing.
#[derive(Debug, Clone)]
pub struct Slice {
    /// Where it came from, e.g. `scan.nii.gz#axial:88`.
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    pub image: GrayImage,
    /// A volume's slice: its plane and index (to put results back in the volume); `None` for a DICOM frame.
    pub position: Option<(Plane, usize)>,
    /// A volume's slice: the volume's geometry.
    pub geometry: Option<std::sync::Arc<nifti::VolumeGeometry>>,
}

/// A grayscale slice as the three equal channels every image becomes (torchvision's `convert("RGB")`).
pub fn gray_to_rgb(gray: &GrayImage) -> image::RgbImage {
    image::DynamicImage::ImageLuma8(gray.clone()).to_rgb8()
}

/// The anatomical plane NIfTI volumes are cut along.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// Perpendicular to inferior–superior; anterior up, the patient's right on the left (radiological).
    #[default]
    Axial,
    /// Perpendicular to posterior–anterior; superior up, the patient's right on the left.
    Coronal,
    /// Perpendicular to left–right; superior up, anterior on the left.
    Sagittal,
}

impl Plane {
    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
        }
    }
}

/// Which slices of a volume (or frames of a multi-frame DICOM) to take.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SliceSelection {
    /// Every slice.
    #[default]
    All,
    /// The middle slice.
    Middle,
    /// `start..=end`.
    Range(usize, usize),
    /// These indices.
    List(Vec<usize>),
}

impl std::str::FromStr for SliceSelection {
    type Err = String;

    /// `all`, `middle`, `40:60` (both ends included) or `10,20,30`.
    fn from_str(s: &str) -> Result<SliceSelection, String> {
        let s = s.trim();
        let number = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{v:?} is not a slice index"))
        };
        match s {
            "all" => Ok(SliceSelection::All),
            "middle" => Ok(SliceSelection::Middle),
            _ if s.contains(':') => {
                let (a, b) = s.split_once(':').unwrap_or((s, s));
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("slice range {s:?} runs backwards"));
                }
                Ok(SliceSelection::Range(a, b))
            }
            _ => Ok(SliceSelection::List(
                s.split(',').map(number).collect::<Result<_, _>>()?,
            )),
        }
    }
}

impl SliceSelection {
    /// The chosen indices among `count`, or the first index that does not exist.
    pub fn indices(&self, count: usize) -> Result<Vec<usize>, usize> {
        let check = |i: usize| if i < count { Ok(i) } else { Err(i) };
        match self {
            SliceSelection::All => Ok((0..count).collect()),
            SliceSelection::Middle => Ok(if count == 0 { vec![] } else { vec![count / 2] }),
            SliceSelection::Range(a, b) => (*a..=*b).map(check).collect(),
            SliceSelection::List(list) => list.iter().copied().map(check).collect(),
        }
    }
}

/// How to turn volumes into slices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeOptions {
    pub plane: Plane,
    pub slices: SliceSelection,
    /// Which volume of a 4-D NIfTI (counted from 0).
    pub volume: usize,
    /// Read each folder's single-frame DICOM files of one series as one volume (sliced like a NIfTI).
    pub dicom_series: bool,
}

thread_local! {
    /// Set while a third-party decoder runs under [`guarded`].
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run a third-party decoder (dicom, nifti) so that a panic on a malformed file becomes `Err(reason)` for the
/// caller to report as an error naming the file. Fuzzing found such panics in dicom-transfer-syntax-registry
/// 0.10.1 (an RLE segment overrunning its frame) and nifti 0.18.0 (a data size inconsistent with the header).
pub fn guarded<T>(decode: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    GUARDED.with(|g| g.set(false));
    result.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown".into())
    })
}

/// Make the process's panic hook stay quiet about the panics [`guarded`] catches (they are reported as errors);
/// every other panic goes to the hook that was installed before (the binary calls this once at start).
pub fn quiet_guarded_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !GUARDED.with(std::cell::Cell::get) {
            default(info);
        }
    }));
}

/// Why a clinical file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MedicalError {
    #[error("{}: not a readable DICOM file: {message}", path.display())]
    Dicom { path: PathBuf, message: String },
    #[error("{}: transfer syntax {syntax} is not supported (convert it to an uncompressed, RLE, baseline or lossless JPEG, or JPEG 2000 syntax, e.g. with `gdcmconv --raw`)", path.display())]
    UnsupportedSyntax { path: PathBuf, syntax: String },
    #[error("{}: no pixel data", .0.display())]
    NoPixelData(PathBuf),
    #[error("{}: not a readable NIfTI file: {message}", path.display())]
    Nifti { path: PathBuf, message: String },
    #[error("{}: slice {index} does not exist ({count} {what})", path.display())]
    NoSuchSlice {
        path: PathBuf,
        index: usize,
        count: usize,
        what: &'static str,
    },
}

impl MedicalError {
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            MedicalError::Dicom { path, .. }
            | MedicalError::UnsupportedSyntax { path, .. }
            | MedicalError::Nifti { path, .. }
            | MedicalError::NoSuchSlice { path, .. } => path,
            MedicalError::NoPixelData(path) => path,
        }
    }
}

/// Read the slices of a clinical file.
pub fn read_slices(
    path: &Path,
    kind: MedicalKind,
    options: &VolumeOptions,
) -> Result<Vec<Slice>, MedicalError> {
    read_slices_in(path, None, kind, options)
}

/// Read the slices of the clinical file at `path`, or of `in_memory` (an upload) named `path` — never written to
/// disk.
pub fn read_slices_in(
    path: &Path,
    in_memory: Option<&[u8]>,
    kind: MedicalKind,
    options: &VolumeOptions,
) -> Result<Vec<Slice>, MedicalError> {
    match kind {
        MedicalKind::Dicom => dicom::read_slices(path, in_memory, &options.slices),
        MedicalKind::Nifti => nifti::read_slices(path, in_memory, options),
    }
}

/// Map `values` to 8 bits with a linear window (`center`, `width`) as DICOM's VOI LUT function LINEAR does
/// (PS3.3 C.11.2.1.2.1).
pub fn window_linear(values: &[f32], center: f64, width: f64) -> Vec<u8> {
    let width = width.max(1.0);
    let (low, high) = (
        center - 0.5 - (width - 1.0) / 2.0,
        center - 0.5 + (width - 1.0) / 2.0,
    );
    values
        .iter()
        .map(|&v| {
            let v = f64::from(v);
            if v <= low {
                0
            } else if v > high {
                255
            } else {
                (((v - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0).round() as u8
            }
        })
        .collect()
}

/// Why values carry no image: none is a finite number (all NaN or infinite), or all are equal. `None` for
/// values with any contrast.
pub fn flatness(values: &[f32]) -> Option<&'static str> {
    let mut finite = values.iter().copied().filter(|v| v.is_finite());
    let Some(first) = finite.next() else {
        return Some("has no finite value (all NaN or infinite)");
    };
    finite
        .all(|v| v == first)
        .then_some("is constant (every value the same)")
}

/// Warn, naming `what`, when `values` carry no image: its prediction means nothing.
pub fn warn_if_flat(what: &str, values: &[f32]) {
    if let Some(why) = flatness(values) {
        tracing::warn!("{what} {why}: its prediction means nothing");
    }
}

/// A robust window for data without one: from the 0.5th to the 99.5th percentile, as (center, width) for
/// [`window_linear`].
pub fn percentile_window(values: &[f32]) -> (f64, f64) {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return (0.5, 1.0);
    }
    sorted.sort_by(f32::total_cmp);
    let at = |q: f64| f64::from(sorted[((sorted.len() - 1) as f64 * q).round() as usize]);
    let (low, high) = (at(0.005), at(0.995));
    let width = (high - low).max(1e-6) + 1.0;
    (low + 0.5 + (width - 1.0) / 2.0, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_selection_parses_and_checks_bounds() {
        assert_eq!("all".parse(), Ok(SliceSelection::All));
        assert_eq!(
            "3:5".parse::<SliceSelection>().map(|s| s.indices(10)),
            Ok(Ok(vec![3, 4, 5]))
        );
        assert_eq!(
            "1, 7".parse::<SliceSelection>().map(|s| s.indices(8)),
            Ok(Ok(vec![1, 7]))
        );
        assert_eq!(SliceSelection::Middle.indices(9), Ok(vec![4]));
        assert_eq!(SliceSelection::List(vec![2, 9]).indices(9), Err(9));
        assert!("5:3".parse::<SliceSelection>().is_err());
        assert!("x".parse::<SliceSelection>().is_err());
    }

    #[test]
    fn flat_values_are_named() {
        assert!(flatness(&[f32::NAN, f32::NAN]).is_some_and(|w| w.contains("NaN")));
        assert!(flatness(&[]).is_some());
        assert!(flatness(&[3.0, f32::NAN, 3.0]).is_some_and(|w| w.contains("constant")));
        assert_eq!(flatness(&[3.0, 3.0, 3.5]), None);
    }

    #[test]
    fn linear_window_follows_the_dicom_formula() {
        // Center 600, width 1600: 0 at ≤ -200, 255 above 1399, 127.6 → 128 at the centre minus a half.
        let out = window_linear(&[-500.0, -200.0, 599.5, 1399.5, 3000.0], 600.0, 1600.0);
        assert_eq!(out, vec![0, 0, 128, 255, 255]);
    }

    #[test]
    fn percentile_window_spans_the_bulk_of_the_values() {
        let values: Vec<f32> = (0..=1000).map(|v| v as f32).collect();
        let (c, w) = percentile_window(&values);
        let out = window_linear(&values, c, w);
        assert_eq!(out[0], 0);
        assert_eq!(out[1000], 255);
        assert!((120..=135).contains(&out[500]), "{}", out[500]);
    }
}
