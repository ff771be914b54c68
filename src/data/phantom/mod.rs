//! The MRI phantom: real anatomy (Colin27) with synthetic glioma, meningioma and pituitary lesions, written in
//! the Kaggle "Brain Tumor MRI Dataset" layout with true masks, so every model, CAM and mask can be scored
//! against truth.
//!
//! Every image, whatever its class, draws the same nuisance variables from the same distributions: plane, slice
//! position (near the sella turcica, so a pituitary lesion can appear in any class's slices), sequence look, bias
//! field, gamma, noise, rotation, scale, framing, mirroring and output size. Only the lesion tells the class.

mod anatomy;
mod geometry;
mod lesion;
mod volume;

pub use anatomy::{Anatomy, Plane};
pub use lesion::LesionRecord;
pub use volume::{
    generate_volumes, render_volume, RenderedVolume, VolumeConfig, VolumeManifest, VolumeRecord,
    VOLUME_MANIFEST,
};

use crate::data::scan::Split;
use crate::data::Class;
use crate::rng;
use geometry::bilinear;
use image::{GrayImage, ImageEncoder};
use lesion::{lerp, tissue_value, Lesion, Section, SliceMaps};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the manifest written beside the images.
pub const MANIFEST: &str = "phantom.json";

/// What to generate. Stored in the manifest, so a phantom set can be regenerated from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Images per class in `Training/`.
    pub train_per_class: usize,
    /// Images per class in `Testing/`.
    pub test_per_class: usize,
    pub seed: u64,
    /// Smallest and largest output side (pixels); each image draws its size in between.
    pub min_size: u32,
    pub max_size: u32,
    /// JPEG quality (1–100).
    pub jpeg_quality: u8,
    /// Lesion sizes × this (1: the realistic ranges; larger lesions make an easier set).
    #[serde(default = "unit_scale")]
    pub lesion_scale: f32,
    /// Leave every lesion out: each image as it would be without its lesion (the nuisance draws and the noise
    /// do not depend on the lesion), masks empty, class folders kept — for testing whether a classifier relies on
    /// the lesion or on something else.
    #[serde(default)]
    pub without_lesions: bool,
    /// A T1 head in MNI space to use as the anatomy instead of the built-in Colin27 (see [`Anatomy::from_mni`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anatomy: Option<PathBuf>,
}

fn unit_scale() -> f32 {
    1.0
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            train_per_class: 50,
            test_per_class: 20,
            seed: 0,
            min_size: 256,
            max_size: 512,
            jpeg_quality: 90,
            lesion_scale: 1.0,
            without_lesions: false,
            anatomy: None,
        }
    }
}

/// Why the phantom could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    #[error("the embedded anatomy could not be read: {0}")]
    Anatomy(String),
    #[error("invalid phantom settings: {0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding {what}: {message}")]
    Encode { what: String, message: String },
}

/// Image look, like the sequences of the Kaggle set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sequence {
    #[serde(rename = "t1")]
    T1,
    #[serde(rename = "t1c")]
    T1Contrast,
    #[serde(rename = "t2")]
    T2,
}

/// One generated image, as recorded in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhantomRecord {
    /// Image path relative to the output folder.
    pub image: PathBuf,
    /// Mask path relative to the output folder.
    pub mask: PathBuf,
    pub split: Split,
    pub class: Class,
    pub plane: Plane,
    /// Slice index along the plane's normal axis of the Colin27 volume.
    pub slice: usize,
    pub sequence: Sequence,
    pub width: u32,
    pub height: u32,
    pub rotation_deg: f32,
    pub mirrored: bool,
    pub noise_sigma: f32,
    pub lesion: Option<LesionRecord>,
    /// Number of mask pixels (0 for no tumour).
    pub mask_pixels: u64,
}

/// The manifest: configuration and one record per image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: String,
    pub config: SynthConfig,
    pub images: Vec<PhantomRecord>,
}

/// One rendered image before encoding.
pub struct Rendered {
    pub image: GrayImage,
    pub mask: GrayImage,
    pub record: PhantomRecord,
}

/// What to render: which split, class and 1-based index.
#[derive(Debug, Clone, Copy)]
pub struct ImageId {
    pub split: Split,
    pub class: Class,
    pub number: usize,
}

impl ImageId {
    /// Kaggle-style relative paths: `Training/glioma/Tr-gl_0001.jpg` and `masks/Training/glioma/Tr-gl_0001.png`.
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        let stem = format!(
            "{}-{}_{:04}",
            self.split.file_prefix(),
            self.class.file_code(),
            self.number
        );
        let dir = Path::new(self.split.folder_name()).join(self.class.folder_name());
        (
            dir.join(format!("{stem}.jpg")),
            Path::new(crate::data::scan::MASKS_FOLDER)
                .join(&dir)
                .join(format!("{stem}.png")),
        )
    }
}

impl SynthConfig {
    pub fn validate(&self) -> Result<(), PhantomError> {
        if self.min_size < 64 || self.min_size > self.max_size || self.max_size > 4096 {
            return Err(PhantomError::Config(format!(
                "size range {}–{} must satisfy 64 ≤ min ≤ max ≤ 4096",
                self.min_size, self.max_size
            )));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(PhantomError::Config(format!(
                "JPEG quality {} is not in 1–100",
                self.jpeg_quality
            )));
        }
        if !(0.25..=4.0).contains(&self.lesion_scale) {
            return Err(PhantomError::Config(format!(
                "lesion scale {} is not in 0.25–4",
                self.lesion_scale
            )));
        }
        Ok(())
    }

    /// Every image to make, in a fixed order.
    pub fn ids(&self) -> Vec<ImageId> {
        let mut ids = Vec::new();
        for (split, count) in [
            (Split::Training, self.train_per_class),
            (Split::Testing, self.test_per_class),
        ] {
            for class in Class::ALL {
                ids.extend((1..=count).map(|number| ImageId {
                    split,
                    class,
                    number,
                }));
            }
        }
        ids
    }
}

/// Render one image and its mask. Deterministic in (`config.seed`, `id`).
pub fn render(config: &SynthConfig, id: ImageId) -> Result<Rendered, PhantomError> {
    let anatomy = Anatomy::named(config.anatomy.as_deref())?;
    let mut rng = rng::stream(
        config.seed,
        "phantom",
        &[id.split as u64, id.class.index() as u64, id.number as u64],
    );
    // Nuisance draws come first and in the same order for every class.
    let plane = Plane::ALL[rng.random_range(0..3)];
    let sella = anatomy::SELLA_VOXEL[plane.normal_axis()];
    let index = match plane {
        Plane::Axial => sella - 3.0 + rng.random_range(0.0..34.0f32),
        Plane::Coronal | Plane::Sagittal => sella + rng.random_range(-10.0..10.0f32),
    }
    .round() as usize;
    let sequence = [Sequence::T1, Sequence::T1Contrast, Sequence::T2][rng.random_range(0..3)];
    let size = rng.random_range(config.min_size..=config.max_size);
    let view = View::random(&mut rng, size);
    let look = Look::random(&mut rng);
    let mut lesion_rng = rng::stream(
        config.seed,
        "phantom-lesion",
        &[id.split as u64, id.class.index() as u64, id.number as u64],
    );

    let slice = anatomy.slice(plane, index);
    let maps = SliceMaps::new(&slice);
    // The lesion draws have their own stream, so leaving the lesion out changes nothing else.
    let lesion = if config.without_lesions {
        None
    } else {
        Lesion::place(
            id.class,
            anatomy,
            &slice,
            &maps,
            config.lesion_scale,
            &mut lesion_rng,
        )
    };
    let gland = lesion::normal_gland(anatomy, &slice);

    let section = lesion.as_ref().map(Section::full);
    let (canvas, cover) = compose(
        &slice,
        &maps,
        section.as_ref(),
        gland.as_ref(),
        sequence,
        &look,
    );
    let (w, h) = (slice.width, slice.height);

    // Sample the output through the view's rotation, scale and shift, add Rician noise, quantise.
    let head = head_box(&slice);
    let mut values = vec![0f32; (size * size) as usize];
    let mut mask = GrayImage::new(size, size);
    let mut mask_pixels = 0u64;
    let mut noise_rng = rng::stream(
        config.seed,
        "phantom-noise",
        &[id.split as u64, id.class.index() as u64, id.number as u64],
    );
    for v in 0..size {
        for u in 0..size {
            let [x, y] = view.to_canvas(u, v, head);
            let clean = bilinear(&canvas, w, h, x, y);
            values[(v * size + u) as usize] = look.rician(clean, &mut noise_rng);
            if lesion.is_some() && bilinear(&cover, w, h, x, y) >= 0.5 {
                mask.put_pixel(u, v, image::Luma([255]));
                mask_pixels += 1;
            }
        }
    }
    let gain = look.white / percentile(&values, 0.995).max(1e-3);
    let image = GrayImage::from_raw(
        size,
        size,
        values.iter().map(|v| quantise(*v, gain)).collect(),
    )
    .ok_or_else(|| PhantomError::Encode {
        what: "image".into(),
        message: "buffer size".into(),
    })?;

    let (image_path, mask_path) = id.paths();
    let record = PhantomRecord {
        image: image_path,
        mask: mask_path,
        split: id.split,
        class: id.class,
        plane,
        slice: slice.index,
        sequence,
        width: size,
        height: size,
        rotation_deg: view.rotation.to_degrees(),
        mirrored: view.mirrored,
        noise_sigma: look.noise,
        lesion: lesion.map(|l| l.record),
        mask_pixels,
    };
    Ok(Rendered {
        image,
        mask,
        record,
    })
}

/// Compose a slice's 1 mm canvas: warped anatomy, tissue contrast, lesion, gland; then bias field and gamma.
/// Returns the values and the lesion's coverage (0–1) per pixel.
fn compose(
    slice: &anatomy::Slice,
    maps: &SliceMaps,
    lesion: Option<&Section>,
    gland: Option<&geometry::Blob>,
    sequence: Sequence,
    look: &Look,
) -> (Vec<f32>, Vec<f32>) {
    let (w, h) = (slice.width, slice.height);
    let mut canvas = vec![0f32; w * h];
    let mut cover = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let p = [x as f32, y as f32];
            let q = lesion.map_or(p, |l| l.source(p));
            let t1 = bilinear(&slice.t1, w, h, q[0], q[1]);
            let brain = bilinear(&slice.brain, w, h, q[0], q[1]);
            let intracranial = bilinear(&maps.intracranial, w, h, q[0], q[1]);
            let mut value = tissue_value(t1, intracranial, sequence);
            if let (Some(gland), Sequence::T1Contrast) = (gland, sequence) {
                value = lerp(
                    value,
                    1.3,
                    geometry::smooth_inside(gland.rho(p), gland.radius),
                );
            }
            if let Some(lesion) = lesion {
                let (painted, covered) = lesion.paint(p, value, brain, intracranial, sequence);
                value = painted * look.texture(p, covered);
                cover[y * w + x] = covered;
            }
            let (u, v) = (
                2.0 * x as f32 / w as f32 - 1.0,
                2.0 * y as f32 / h as f32 - 1.0,
            );
            canvas[y * w + x] = (value.max(0.0) * look.bias(u, v)).powf(look.gamma);
        }
    }
    (canvas, cover)
}

/// Generate the whole set into `out`, calling `progress` after each image. Returns the manifest, which is also
/// written to `out/phantom.json`. Same config ⇒ byte-identical files.
pub fn generate(
    out: &Path,
    config: &SynthConfig,
    progress: &(dyn Fn() + Sync),
) -> Result<Manifest, PhantomError> {
    config.validate()?;
    Anatomy::named(config.anatomy.as_deref())?;
    let records: Vec<PhantomRecord> = config
        .ids()
        .into_par_iter()
        .map(|id| {
            let rendered = render(config, id)?;
            write_rendered(out, config, &rendered)?;
            progress();
            Ok(rendered.record)
        })
        .collect::<Result<_, PhantomError>>()?;
    let manifest = Manifest {
        generator: format!("tumornet {}", env!("CARGO_PKG_VERSION")),
        config: config.clone(),
        images: records,
    };
    let path = out.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| PhantomError::Encode {
        what: MANIFEST.into(),
        message: e.to_string(),
    })?;
    write_file(&path, &json)?;
    Ok(manifest)
}

/// Encode as the Kaggle set stores its images: grayscale content saved as an RGB JPEG; the mask as a 0/255 PNG.
fn write_rendered(
    out: &Path,
    config: &SynthConfig,
    rendered: &Rendered,
) -> Result<(), PhantomError> {
    let record = &rendered.record;
    let rgb: Vec<u8> = rendered
        .image
        .as_raw()
        .iter()
        .flat_map(|v| [*v, *v, *v])
        .collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, config.jpeg_quality)
        .write_image(
            &rgb,
            record.width,
            record.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| PhantomError::Encode {
            what: record.image.display().to_string(),
            message: e.to_string(),
        })?;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            rendered.mask.as_raw(),
            record.width,
            record.height,
            image::ExtendedColorType::L8,
        )
        .map_err(|e| PhantomError::Encode {
            what: record.mask.display().to_string(),
            message: e.to_string(),
        })?;
    write_file(&out.join(&record.image), &jpeg)?;
    write_file(&out.join(&record.mask), &png)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PhantomError> {
    let io = |source| PhantomError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}

/// How the slice is framed in the output image.
struct View {
    size: u32,
    rotation: f32,
    mirrored: bool,
    /// Field of view relative to the head's extent (> 1: the whole head is in the picture, so no lesion is cut).
    field: f32,
    shift: [f32; 2],
}

impl View {
    fn random(rng: &mut ChaCha8Rng, size: u32) -> View {
        let field = rng.random_range(1.02..1.3);
        View {
            size,
            rotation: rng.random_range(-15.0f32..15.0).to_radians(),
            mirrored: rng.random_bool(0.5),
            field,
            shift: [rng.random_range(-0.05..0.05), rng.random_range(-0.05..0.05)],
        }
    }

    /// Canvas position (mm) shown at output pixel (u, v), given the head's box (centre x, centre y, extent).
    fn to_canvas(&self, u: u32, v: u32, head: [f32; 3]) -> [f32; 2] {
        let s = self.size as f32;
        let mm_per_pixel = head[2] * self.field / s;
        let mut du = (u as f32 + 0.5) / s - 0.5 - self.shift[0];
        let dv = (v as f32 + 0.5) / s - 0.5 - self.shift[1];
        if self.mirrored {
            du = -du;
        }
        let (sin, cos) = self.rotation.sin_cos();
        let (du, dv) = (du * s * mm_per_pixel, dv * s * mm_per_pixel);
        [
            head[0] + cos * du - sin * dv - 0.5,
            head[1] + sin * du + cos * dv - 0.5,
        ]
    }
}

/// Per-image intensity variation.
struct Look {
    bias: [f32; 5],
    gamma: f32,
    /// Rician noise σ in white-matter units.
    noise: f32,
    /// Output grey level of the 99.5th percentile.
    white: f32,
    /// Lesion texture: plane waves (kx, ky, phase).
    waves: [[f32; 3]; 4],
}

impl Look {
    fn random(rng: &mut ChaCha8Rng) -> Look {
        let bias = std::array::from_fn(|_| rng.sample::<f32, _>(StandardNormal) * 0.12);
        let waves = std::array::from_fn(|_| {
            let wavelength = rng.random_range(4.0..12.0f32);
            let angle = rng.random_range(0.0..std::f32::consts::TAU);
            let k = std::f32::consts::TAU / wavelength;
            [
                k * angle.cos(),
                k * angle.sin(),
                rng.random_range(0.0..std::f32::consts::TAU),
            ]
        });
        Look {
            bias,
            gamma: rng.random_range(0.8..1.25),
            noise: rng.random_range(0.01..0.05),
            white: rng.random_range(200.0..250.0),
            waves,
        }
    }

    /// A clean value seen through Rician noise of this look's σ (two normal draws from `rng`, in that order).
    fn rician(&self, clean: f32, rng: &mut ChaCha8Rng) -> f32 {
        let n1: f32 = rng.sample(StandardNormal);
        let n2: f32 = rng.sample(StandardNormal);
        ((clean + self.noise * n1).powi(2) + (self.noise * n2).powi(2)).sqrt()
    }

    fn bias(&self, u: f32, v: f32) -> f32 {
        let b = &self.bias;
        (b[0] * u + b[1] * v + b[2] * u * u + b[3] * v * v + b[4] * u * v).exp()
    }

    fn texture(&self, p: [f32; 2], covered: f32) -> f32 {
        if covered <= 0.0 {
            return 1.0;
        }
        let wave: f32 = self
            .waves
            .iter()
            .map(|[kx, ky, phase]| (kx * p[0] + ky * p[1] + phase).sin())
            .sum();
        1.0 + 0.04 * wave * covered
    }
}

/// Centre and extent (mm) of the head (T1 above background) on a slice.
fn head_box(slice: &anatomy::Slice) -> [f32; 3] {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..slice.height {
        for x in 0..slice.width {
            if slice.t1[slice.at(x, y)] > 20.0 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x0 > x1 {
        return [
            slice.width as f32 / 2.0,
            slice.height as f32 / 2.0,
            slice.width.max(slice.height) as f32,
        ];
    }
    let extent = ((x1 - x0).max(y1 - y0) + 1) as f32;
    [
        (x0 + x1 + 1) as f32 / 2.0,
        (y0 + y1 + 1) as f32 / 2.0,
        extent,
    ]
}

/// An output grey level: `value × gain`, rounded half up by truncation (values are non-negative; `as u8`
/// saturates at 255).
fn quantise(value: f32, gain: f32) -> u8 {
    (value * gain + 0.5) as u8
}

/// The `q` quantile of `values` from a 1024-bin histogram over their range.
fn percentile(values: &[f32], q: f32) -> f32 {
    let max = values.iter().copied().fold(0.0f32, f32::max);
    if max <= 0.0 {
        return 0.0;
    }
    let mut histogram = [0u32; 1024];
    for v in values {
        histogram[((v / max) * 1023.0) as usize] += 1;
    }
    let target = (values.len() as f32 * q) as u32;
    let mut seen = 0;
    for (bin, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= target {
            return (bin as f32 + 1.0) / 1024.0 * max;
        }
    }
    max
}
