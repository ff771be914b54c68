//! The 3-D phantom: whole heads (Colin27, or any T1 in MNI space) with one 3-D lesion each and its true mask
//! volume, written as NIfTI in the anatomy's own grid (1 mm, RAS) so that volumetric Dice, HD95 in millimetres
//! and tumour volume in millilitres can be checked against truth.
//!
//! A volume draws its nuisance variables once (sequence, bias field, gamma, noise level, output white level) and
//! its lesion from the same lesion models as the 2-D phantom: placed on an axial centre slice, then tapered as an
//! ellipsoid along the head's vertical axis (see [`Section`]). No tumour volumes have an empty mask.

use super::anatomy::{Anatomy, Plane, SELLA_VOXEL};
use super::lesion::{normal_gland, Lesion, LesionRecord, Section, SliceMaps};
use super::{compose, percentile, quantise, Look, PhantomError, Sequence};
use crate::data::Class;
use crate::rng;
use ndarray::Array3;
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the manifest written beside the volumes.
pub const VOLUME_MANIFEST: &str = "volumes.json";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeConfig {
    /// Volumes per class (no tumour included).
    pub per_class: usize,
    pub seed: u64,
    /// Lesion sizes × this, as for the 2-D phantom.
    pub lesion_scale: f32,
    /// A T1 head in MNI space instead of Colin27.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anatomy: Option<PathBuf>,
}

/// One volume, as recorded in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The volume, relative to the output folder (`volumes/<class>/<name>.nii.gz`).
    pub image: PathBuf,
    /// Its true mask (`truth/<class>/<name>.nii.gz`, 1 inside the tumour).
    pub truth: PathBuf,
    /// The same volume as a DICOM series, one axial MR image per file (`dicom/<class>/<name>/IM0001.dcm`, …).
    pub dicom: PathBuf,
    pub class: Class,
    pub sequence: Sequence,
    pub noise_sigma: f32,
    /// Axial slice (voxel z) the lesion was placed on, and its semi-axis (mm) along z.
    pub centre_slice: Option<usize>,
    pub semi_axis_mm: Option<f32>,
    pub lesion: Option<LesionRecord>,
    pub tumour_voxels: u64,
    pub tumour_ml: f64,
}

/// The manifest: configuration and one record per volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeManifest {
    pub generator: String,
    pub config: VolumeConfig,
    pub volumes: Vec<VolumeRecord>,
}

/// A rendered volume: 8-bit grey levels and the true mask, both indexed `[x, y, z]` in the anatomy's grid.
pub struct RenderedVolume {
    pub image: Array3<u8>,
    pub truth: Array3<u8>,
    pub record: VolumeRecord,
}

/// File stem of volume `number` (1-based) of `class`: `vol-gl_0001`.
fn stem(class: Class, number: usize) -> String {
    format!("vol-{}_{number:04}", class.file_code())
}

/// Render volume `number` (1-based) of `class`. Deterministic in (`config.seed`, `class`, `number`).
pub fn render_volume(
    config: &VolumeConfig,
    class: Class,
    number: usize,
) -> Result<RenderedVolume, PhantomError> {
    let anatomy = Anatomy::named(config.anatomy.as_deref())?;
    let key = [class.index() as u64, number as u64];
    let mut rng = rng::stream(config.seed, "phantom-volume", &key);
    let sequence = [Sequence::T1, Sequence::T1Contrast, Sequence::T2][rng.random_range(0..3)];
    let look = Look::random(&mut rng);
    let sella_z = SELLA_VOXEL[2];
    let mut lesion_rng = rng::stream(config.seed, "phantom-volume-lesion", &key);
    let [nx, ny, nz] = anatomy.dims();
    let elongation = lesion_rng.random_range(0.8..1.25f32);
    let centre = match class {
        // Above the sella: the adenoma reaches from the fossa upward.
        Class::Pituitary => sella_z + lesion_rng.random_range(3.0..6.0f32) * config.lesion_scale,
        _ => sella_z + lesion_rng.random_range(10.0..60.0f32),
    }
    .round()
    .clamp(0.0, (nz - 1) as f32) as usize;
    let centre_slice = anatomy.slice(Plane::Axial, centre);
    let centre_maps = SliceMaps::new(&centre_slice);
    let lesion = Lesion::place(
        class,
        anatomy,
        &centre_slice,
        &centre_maps,
        config.lesion_scale,
        &mut lesion_rng,
    );
    let semi_axis = lesion.as_ref().map(|l| l.record.radius_mm * elongation);

    // Every axial slice composed as the 2-D phantom composes one, at 1 mm with no framing; then Rician noise.
    let slices: Vec<(Vec<f32>, Vec<bool>)> = (0..nz)
        .into_par_iter()
        .map(|z| {
            let slice = anatomy.slice(Plane::Axial, z);
            let maps = SliceMaps::new(&slice);
            let gland = normal_gland(anatomy, &slice);
            let section = lesion
                .as_ref()
                .zip(semi_axis)
                .and_then(|(l, semi)| Section::at(l, z as f32 - centre as f32, semi));
            let (canvas, cover) = compose(
                &slice,
                &maps,
                section.as_ref(),
                gland.as_ref(),
                sequence,
                &look,
            );
            let mut noise = rng::stream(
                config.seed,
                "phantom-volume-noise",
                &[key[0], key[1], z as u64],
            );
            let values = canvas
                .iter()
                .map(|clean| look.rician(*clean, &mut noise))
                .collect();
            (values, cover.iter().map(|c| *c >= 0.5).collect())
        })
        .collect();
    let all: Vec<f32> = slices.iter().flat_map(|(v, _)| v.iter().copied()).collect();
    let gain = look.white / percentile(&all, 0.995).max(1e-3);

    // Display pixel (col, row) of axial slice z is voxel (nx − 1 − col, ny − 1 − row, z).
    let mut image = Array3::<u8>::zeros((nx, ny, nz));
    let mut truth = Array3::<u8>::zeros((nx, ny, nz));
    for (z, (values, inside)) in slices.iter().enumerate() {
        for row in 0..ny {
            for col in 0..nx {
                let i = row * nx + col;
                let voxel = [nx - 1 - col, ny - 1 - row, z];
                image[voxel] = quantise(values[i], gain);
                truth[voxel] = u8::from(inside[i]);
            }
        }
    }
    let tumour_voxels = truth.iter().filter(|v| **v > 0).count() as u64;
    let name = stem(class, number);
    let folder = class.folder_name();
    let record = VolumeRecord {
        image: Path::new("volumes")
            .join(folder)
            .join(format!("{name}.nii.gz")),
        truth: Path::new("truth")
            .join(folder)
            .join(format!("{name}.nii.gz")),
        dicom: Path::new("dicom").join(folder).join(&name),
        class,
        sequence,
        noise_sigma: look.noise,
        centre_slice: lesion.as_ref().map(|_| centre),
        semi_axis_mm: semi_axis,
        lesion: lesion.map(|l| l.record),
        tumour_voxels,
        // The anatomy's grid is 1 mm isotropic.
        tumour_ml: tumour_voxels as f64 / 1000.0,
    };
    Ok(RenderedVolume {
        image,
        truth,
        record,
    })
}

/// Generate `config.per_class` volumes of each class into `out`, calling `progress` after each. Returns the
/// manifest, also written to `out/volumes.json`.
pub fn generate_volumes(
    out: &Path,
    config: &VolumeConfig,
    progress: &(dyn Fn() + Sync),
) -> Result<VolumeManifest, PhantomError> {
    if !(0.25..=4.0).contains(&config.lesion_scale) {
        return Err(PhantomError::Config(format!(
            "lesion scale {} is not in 0.25–4",
            config.lesion_scale
        )));
    }
    Anatomy::named(config.anatomy.as_deref())?;
    let geometry = Anatomy::geometry()?;
    let mut records = Vec::new();
    // One volume at a time (each renders its slices in parallel): a volume holds about 30 MB while it is made.
    for class in Class::ALL {
        for number in 1..=config.per_class {
            let rendered = render_volume(config, class, number)?;
            for (relative, data) in [
                (&rendered.record.image, &rendered.image),
                (&rendered.record.truth, &rendered.truth),
            ] {
                let path = out.join(relative);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| PhantomError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                geometry
                    .write_labels(&path, data)
                    .map_err(|e| PhantomError::Encode {
                        what: path.display().to_string(),
                        message: e.to_string(),
                    })?;
            }
            write_dicom(out, config, number, &rendered)?;
            records.push(rendered.record);
            progress();
        }
    }
    let manifest = VolumeManifest {
        generator: format!("tumornet {}", env!("CARGO_PKG_VERSION")),
        config: config.clone(),
        volumes: records,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| PhantomError::Encode {
        what: VOLUME_MANIFEST.into(),
        message: e.to_string(),
    })?;
    super::write_file(&out.join(VOLUME_MANIFEST), &json)?;
    Ok(manifest)
}

/// The volume as an axial DICOM series in the same place: file k is voxel slice z = k; its pixel (column, row) is
/// voxel (nx − 1 − column, ny − 1 − row) — the radiological display — and the LPS geometry follows from the
/// anatomy's RAS affine (x_LPS = −x_RAS, y_LPS = −y_RAS).
fn write_dicom(
    out: &Path,
    config: &VolumeConfig,
    number: usize,
    rendered: &RenderedVolume,
) -> Result<(), PhantomError> {
    let (nx, ny, nz) = rendered.image.dim();
    let affine = Anatomy::colin27()?.affine();
    let data = Array3::from_shape_fn((nx, ny, nz), |(column, row, z)| {
        u16::from(rendered.image[[nx - 1 - column, ny - 1 - row, z]])
    });
    // World (RAS) of voxel (nx − 1, ny − 1, 0), then turned to LPS; columns run towards −x_RAS (+x_LPS).
    let corner =
        |i: usize| affine[i][0] * (nx - 1) as f64 + affine[i][1] * (ny - 1) as f64 + affine[i][3];
    let geometry = crate::data::medical::dicom::SeriesGeometry {
        origin: [-corner(0), -corner(1), corner(2)],
        row_direction: [affine[0][0], affine[1][0], -affine[2][0]],
        column_direction: [affine[0][1], affine[1][1], -affine[2][1]],
        spacing: [affine[1][1].abs(), affine[0][0].abs()],
        step: [-affine[0][2], -affine[1][2], affine[2][2]],
    };
    let record = &rendered.record;
    let mut rng = rng::stream(
        config.seed,
        "phantom-volume-uid",
        &[record.class.index() as u64, number as u64],
    );
    let uid = format!("2.25.{}", u128::from(rng.random::<u64>()) + 1);
    let dir = out.join(&record.dicom);
    crate::data::medical::dicom::write_series(
        &dir,
        &data,
        &geometry,
        &crate::data::medical::dicom::SeriesIdentity {
            uid: &uid,
            description: &format!("TumorNet phantom {}", record.class),
        },
    )
    .map_err(|e| PhantomError::Encode {
        what: dir.display().to_string(),
        message: e.to_string(),
    })
}
