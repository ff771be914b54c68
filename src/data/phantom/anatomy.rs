//! Real anatomy for the phantom: the Colin27 T1 head (`ch2.nii.gz`) and its brain mask (`ch2bet.nii.gz`), both
//! 181×217×181 at 1 mm in MNI space (RAS, x fastest), embedded in the binary. Licence: `assets/NOTICE`.

use super::PhantomError;
use nifti::{InMemNiftiObject, NiftiObject};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

static CH2: &[u8] = include_bytes!("../../../assets/ch2.nii.gz");
static CH2_BRAIN: &[u8] = include_bytes!("../../../assets/ch2bet.nii.gz");

/// Grey levels of the tissue peaks of Colin27 inside the brain mask (measured on the histogram of `ch2.nii.gz`):
/// cerebrospinal fluid, grey matter, white matter.
pub const CSF_LEVEL: f32 = 32.0;
pub const GREY_LEVEL: f32 = 86.0;
pub const WHITE_LEVEL: f32 = 112.0;

/// Centre of the normal pituitary gland in Colin27 voxel coordinates (found on the mid-sagittal slice).
pub const SELLA_VOXEL: [f32; 3] = [90.0, 131.0, 41.0];

/// A slicing plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

impl Plane {
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    /// The volume axis normal to this plane (0 = x, 1 = y, 2 = z).
    pub fn normal_axis(self) -> usize {
        match self {
            Plane::Axial => 2,
            Plane::Coronal => 1,
            Plane::Sagittal => 0,
        }
    }
}

/// The head volume.
pub struct Anatomy {
    dims: [usize; 3],
    t1: Vec<u8>,
    brain: Vec<u8>,
    affine: [[f64; 4]; 3],
}

/// One slice in display orientation at 1 mm per pixel: axial and coronal in radiological convention (patient's
/// right on the left, anterior or superior up), sagittal with anterior to the right and superior up.
pub struct Slice {
    pub plane: Plane,
    pub index: usize,
    pub width: usize,
    pub height: usize,
    /// T1 grey levels as stored (0–255).
    pub t1: Vec<f32>,
    /// 1 inside the brain, 0 outside.
    pub brain: Vec<f32>,
}

impl Slice {
    pub fn at(&self, x: usize, y: usize) -> usize {
        y * self.width + x
    }
}

impl Anatomy {
    /// The embedded Colin27 head, decoded once per process.
    pub fn colin27() -> Result<&'static Anatomy, PhantomError> {
        static ANATOMY: OnceLock<Result<Anatomy, String>> = OnceLock::new();
        ANATOMY
            .get_or_init(|| {
                let (dims, t1, affine) = read_volume(CH2)?;
                let (brain_dims, brain, _) = read_volume(CH2_BRAIN)?;
                if dims != brain_dims {
                    return Err(format!("brain mask is {brain_dims:?}, head is {dims:?}"));
                }
                Ok(Anatomy {
                    dims,
                    t1,
                    brain,
                    affine,
                })
            })
            .as_ref()
            .map_err(|e| PhantomError::Anatomy(e.clone()))
    }

    /// The anatomy a phantom config asks for: Colin27, or a T1 volume in MNI space read once per process.
    pub fn named(file: Option<&Path>) -> Result<&'static Anatomy, PhantomError> {
        let Some(path) = file else {
            return Anatomy::colin27();
        };
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, &'static Anatomy>>> = OnceLock::new();
        let loaded = LOADED.get_or_init(|| Mutex::new(HashMap::new()));
        let mut loaded = loaded
            .lock()
            .map_err(|_| PhantomError::Anatomy("the anatomy cache is poisoned".into()))?;
        if let Some(anatomy) = loaded.get(path) {
            return Ok(anatomy);
        }
        let anatomy: &'static Anatomy = Box::leak(Box::new(Anatomy::from_mni(path)?));
        loaded.insert(path.to_path_buf(), anatomy);
        Ok(anatomy)
    }

    /// A T1 head in MNI space (any voxel grid and orientation, as its header's affine says) as phantom anatomy:
    /// resampled (trilinear) onto Colin27's 1 mm grid through both affines, its grey levels mapped onto Colin27's
    /// by matching quantiles inside the brain, with Colin27's brain mask — so lesion placement, the sella and the
    /// tissue levels hold, and only the anatomy's own shapes and textures differ.
    pub fn from_mni(path: &Path) -> Result<Anatomy, PhantomError> {
        let colin = Anatomy::colin27()?;
        let (data, other_affine) = crate::data::medical::nifti::read_with_affine(path)
            .map_err(|e| PhantomError::Anatomy(e.to_string()))?;
        let to_other = invert_affine(&other_affine).ok_or_else(|| {
            PhantomError::Anatomy(format!("{}: its affine is singular", path.display()))
        })?;
        let colin_affine = colin.affine;
        let [nx, ny, nz] = colin.dims;
        let mut resampled = vec![0f32; nx * ny * nz];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let world = apply(&colin_affine, [x as f64, y as f64, z as f64]);
                    let voxel = apply(&to_other, world);
                    resampled[x + nx * (y + ny * z)] = trilinear(&data, voxel);
                }
            }
        }
        let inside = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .zip(&colin.brain)
                .filter(|(_, b)| **b > 0)
                .map(|(v, _)| *v)
                .collect()
        };
        let colin_t1: Vec<f32> = colin.t1.iter().map(|v| f32::from(*v)).collect();
        let map = QuantileMap::new(&inside(&resampled), &inside(&colin_t1)).ok_or_else(|| {
            PhantomError::Anatomy(format!(
                "{}: no signal inside the brain after resampling — is it a head in MNI space?",
                path.display()
            ))
        })?;
        let t1 = resampled
            .iter()
            .map(|v| map.apply(*v).round().clamp(0.0, 255.0) as u8)
            .collect();
        Ok(Anatomy {
            dims: colin.dims,
            t1,
            brain: colin.brain.clone(),
            affine: colin.affine,
        })
    }

    /// The header of the anatomy's grid (Colin27's: 1 mm, RAS, MNI), for writing volumes in it.
    pub fn geometry() -> Result<crate::data::medical::nifti::VolumeGeometry, PhantomError> {
        crate::data::medical::nifti::VolumeGeometry::from_bytes(Path::new("ch2.nii.gz"), CH2)
            .map_err(|e| PhantomError::Anatomy(e.to_string()))
    }

    /// Voxel-to-world affine (rows of a 3×4 matrix) of the anatomy's grid (Colin27's).
    pub fn affine(&self) -> [[f64; 4]; 3] {
        self.affine
    }

    /// The anatomy's T1 grey level at voxel (x, y, z).
    pub fn t1_at(&self, x: usize, y: usize, z: usize) -> u8 {
        let [nx, ny, _] = self.dims;
        self.t1[x + nx * (y + ny * z)]
    }

    /// Volume size (x, y, z).
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// The slice `index` along `plane`'s normal axis (clamped to the volume).
    pub fn slice(&self, plane: Plane, index: usize) -> Slice {
        let [nx, ny, nz] = self.dims;
        let index = index.min(self.dims[plane.normal_axis()] - 1);
        let (width, height) = match plane {
            Plane::Axial => (nx, ny),
            Plane::Coronal => (nx, nz),
            Plane::Sagittal => (ny, nz),
        };
        let mut t1 = Vec::with_capacity(width * height);
        let mut brain = Vec::with_capacity(width * height);
        for row in 0..height {
            for col in 0..width {
                let [x, y, z] = self.display_to_voxel(plane, index, col, row);
                let v = x + nx * (y + ny * z);
                t1.push(f32::from(self.t1[v]));
                brain.push(if self.brain[v] > 0 { 1.0 } else { 0.0 });
            }
        }
        Slice {
            plane,
            index,
            width,
            height,
            t1,
            brain,
        }
    }

    /// Voxel of display pixel (col, row) of slice `index` along `plane`.
    fn display_to_voxel(&self, plane: Plane, index: usize, col: usize, row: usize) -> [usize; 3] {
        let [nx, ny, nz] = self.dims;
        match plane {
            Plane::Axial => [nx - 1 - col, ny - 1 - row, index],
            Plane::Coronal => [nx - 1 - col, index, nz - 1 - row],
            Plane::Sagittal => [index, col, nz - 1 - row],
        }
    }

    /// Where a voxel position lands in a slice of `plane`: (col, row) and its signed distance from the slice.
    pub fn voxel_to_display(&self, plane: Plane, index: usize, voxel: [f32; 3]) -> ([f32; 2], f32) {
        let [nx, ny, nz] = self.dims.map(|d| d as f32);
        let [x, y, z] = voxel;
        match plane {
            Plane::Axial => ([nx - 1.0 - x, ny - 1.0 - y], z - index as f32),
            Plane::Coronal => ([nx - 1.0 - x, nz - 1.0 - z], y - index as f32),
            Plane::Sagittal => ([y, nz - 1.0 - z], x - index as f32),
        }
    }
}

/// Invert a 3×4 affine (rotation-scale and shift); `None` if singular.
fn invert_affine(a: &[[f64; 4]; 3]) -> Option<[[f64; 4]; 3]> {
    let m = |i: usize, j: usize| a[i][j];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    if det.abs() < 1e-12 {
        return None;
    }
    let cofactor = |i: usize, j: usize| {
        let (r0, r1) = ((i + 1) % 3, (i + 2) % 3);
        let (c0, c1) = ((j + 1) % 3, (j + 2) % 3);
        m(r0, c0) * m(r1, c1) - m(r0, c1) * m(r1, c0)
    };
    // inverse[j][i] = cofactor(i, j) / det (cyclic cofactors carry their own sign).
    let mut inverse = [[0f64; 4]; 3];
    for (j, row) in inverse.iter_mut().enumerate() {
        for (i, value) in row.iter_mut().take(3).enumerate() {
            *value = cofactor(i, j) / det;
        }
    }
    for row in &mut inverse {
        row[3] = -(0..3).map(|k| row[k] * a[k][3]).sum::<f64>();
    }
    Some(inverse)
}

fn apply(a: &[[f64; 4]; 3], p: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|i| a[i][0] * p[0] + a[i][1] * p[1] + a[i][2] * p[2] + a[i][3])
}

/// Trilinear sample of `data` at a fractional voxel position; 0 outside the volume.
fn trilinear(data: &ndarray::Array3<f32>, p: [f64; 3]) -> f32 {
    let shape = data.shape();
    let mut base = [0usize; 3];
    let mut frac = [0f32; 3];
    for k in 0..3 {
        if !(p[k] >= 0.0 && p[k] <= (shape[k] - 1) as f64) {
            return 0.0;
        }
        base[k] = (p[k].floor() as usize).min(shape[k].saturating_sub(2));
        frac[k] = (p[k] - base[k] as f64) as f32;
    }
    let mut sum = 0.0;
    for corner in 0..8 {
        let mut weight = 1.0;
        let mut index = [0usize; 3];
        for k in 0..3 {
            let up = (corner >> k) & 1 == 1;
            index[k] = (base[k] + usize::from(up)).min(shape[k] - 1);
            weight *= if up { frac[k] } else { 1.0 - frac[k] };
        }
        if weight > 0.0 {
            sum += weight * data[index];
        }
    }
    sum
}

/// A monotone grey-level map that sends the percentiles (1st to 99th) of one sample onto those of another,
/// linear in between, through 0 below the first and with the overall slope above the last.
struct QuantileMap {
    from: Vec<f32>,
    to: Vec<f32>,
}

impl QuantileMap {
    fn new(from: &[f32], to: &[f32]) -> Option<QuantileMap> {
        let quantiles = |values: &[f32]| -> Option<Vec<f32>> {
            let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
            if sorted.len() < 100 {
                return None;
            }
            sorted.sort_by(f32::total_cmp);
            Some(
                (1..=99)
                    .map(|q| sorted[(sorted.len() - 1) * q / 100])
                    .collect(),
            )
        };
        let (mut from, to) = (quantiles(from)?, quantiles(to)?);
        // Strictly increasing knots, so every segment has a slope.
        for i in 1..from.len() {
            from[i] = from[i].max(from[i - 1] + 1e-3);
        }
        (from[98] - from[0] > 1.0).then_some(QuantileMap { from, to })
    }

    fn apply(&self, v: f32) -> f32 {
        let (from, to) = (&self.from, &self.to);
        let last = from.len() - 1;
        if v <= from[0] {
            return if from[0] > 0.0 {
                v * to[0] / from[0]
            } else {
                to[0]
            };
        }
        if v >= from[last] {
            // Above the top knot: the overall slope (a plateau between the last knots would flatten the scalp).
            let slope = (to[last] - to[0]) / (from[last] - from[0]);
            return to[last] + (v - from[last]) * slope.max(0.0);
        }
        let i = from.partition_point(|f| *f <= v).clamp(1, last);
        let t = (v - from[i - 1]) / (from[i] - from[i - 1]);
        to[i - 1] + t * (to[i] - to[i - 1])
    }
}

type Volume = ([usize; 3], Vec<u8>, [[f64; 4]; 3]);

fn read_volume(gz: &[u8]) -> Result<Volume, String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot decompress the embedded volume: {e}"))?;
    let object = InMemNiftiObject::from_reader(raw.as_slice())
        .map_err(|e| format!("cannot read the embedded volume: {e}"))?;
    let affine = crate::data::medical::nifti::affine(object.header());
    let dim = object.header().dim;
    if dim[0] != 3 {
        return Err(format!(
            "expected a 3-D volume, header says {} dimensions",
            dim[0]
        ));
    }
    let dims = [dim[1] as usize, dim[2] as usize, dim[3] as usize];
    let data: Vec<u8> = object
        .into_volume()
        .into_nifti_typed_data()
        .map_err(|e| format!("embedded volume is not 8-bit: {e}"))?;
    if data.len() != dims.iter().product::<usize>() {
        return Err(format!(
            "volume holds {} voxels, header says {dims:?}",
            data.len()
        ));
    }
    Ok((dims, data, affine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_affine_and_its_inverse_compose_to_the_identity() {
        let a = [
            [0.0, -1.2, 0.1, 30.0],
            [0.9, 0.0, 0.0, -12.0],
            [0.05, 0.0, 2.5, 7.0],
        ];
        let inverse = invert_affine(&a).expect("invertible");
        for p in [[0.0, 0.0, 0.0], [10.0, -3.0, 55.5], [-7.0, 80.0, 1.0]] {
            let back = apply(&inverse, apply(&a, p));
            for k in 0..3 {
                assert!((back[k] - p[k]).abs() < 1e-9, "{p:?} → {back:?}");
            }
        }
        let singular = [
            [1.0, 2.0, 3.0, 0.0],
            [2.0, 4.0, 6.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        assert!(invert_affine(&singular).is_none());
    }

    #[test]
    fn the_quantile_map_sends_one_distribution_onto_another() {
        // Uniform on [10, 110] onto uniform on [0, 200]: v ↦ 2 (v − 10).
        let from: Vec<f32> = (0..=1000).map(|i| 10.0 + i as f32 * 0.1).collect();
        let to: Vec<f32> = (0..=1000).map(|i| i as f32 * 0.2).collect();
        let map = QuantileMap::new(&from, &to).expect("map");
        for v in [20.0f32, 50.0, 77.7, 105.0] {
            assert!((map.apply(v) - 2.0 * (v - 10.0)).abs() < 0.3, "{v}");
        }
        // Monotone beyond the knots, and 0 stays 0.
        assert_eq!(map.apply(0.0), 0.0);
        assert!(map.apply(200.0) > map.apply(110.0));
        // A flat sample has no map.
        assert!(QuantileMap::new(&[5.0; 500], &to).is_none());
    }

    #[test]
    fn colin27_loads_and_slices_have_brain_inside_head() {
        let anatomy = Anatomy::colin27().expect("embedded anatomy");
        assert_eq!(anatomy.dims(), [181, 217, 181]);
        for plane in Plane::ALL {
            let index = SELLA_VOXEL[plane.normal_axis()] as usize;
            let slice = anatomy.slice(plane, index);
            let brain: f32 = slice.brain.iter().sum();
            assert!(brain > 2000.0, "{plane:?}: brain area {brain}");
            // Brain voxels are tissue, not background.
            let dark = slice
                .t1
                .iter()
                .zip(&slice.brain)
                .filter(|(v, b)| **b > 0.0 && **v < 5.0)
                .count();
            assert!(
                (dark as f32) < brain * 0.01,
                "{plane:?}: {dark} dark brain pixels"
            );
            // The sella projects onto the slice through it.
            let ([col, row], distance) = anatomy.voxel_to_display(plane, index, SELLA_VOXEL);
            assert!(distance.abs() < 1.0);
            assert!(
                col >= 0.0
                    && row >= 0.0
                    && (col as usize) < slice.width
                    && (row as usize) < slice.height
            );
        }
    }
}
