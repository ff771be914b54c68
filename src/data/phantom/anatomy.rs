//! Real anatomy for the phantom: the Colin27 T1 head (`ch2.nii.gz`) and its brain mask (`ch2bet.nii.gz`), both
//! 181×217×181 at 1 mm in MNI space (RAS, x fastest), embedded in the binary. Licence: `assets/NOTICE`.

use super::PhantomError;
use nifti::{InMemNiftiObject, NiftiObject};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::OnceLock;

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
                let (dims, t1) = read_volume(CH2)?;
                let (brain_dims, brain) = read_volume(CH2_BRAIN)?;
                if dims != brain_dims {
                    return Err(format!("brain mask is {brain_dims:?}, head is {dims:?}"));
                }
                Ok(Anatomy { dims, t1, brain })
            })
            .as_ref()
            .map_err(|e| PhantomError::Anatomy(e.clone()))
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

fn read_volume(gz: &[u8]) -> Result<([usize; 3], Vec<u8>), String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot decompress the embedded volume: {e}"))?;
    let object = InMemNiftiObject::from_reader(raw.as_slice())
        .map_err(|e| format!("cannot read the embedded volume: {e}"))?;
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
    Ok((dims, data))
}

#[cfg(test)]
mod tests {
    use super::*;

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
