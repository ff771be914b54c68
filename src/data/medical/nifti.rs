//! NIfTI-1 volumes (`.nii`, `.nii.gz`) through the `nifti` crate. The voxel array is reoriented to the closest
//! RAS+ axes by the header's affine (sform when its code is set, else qform, else the voxel sizes — as nibabel
//! does), then cut along a plane and laid out as radiology viewers show it: anterior or superior up, the patient's
//! right on the image's left (axial, coronal), anterior on the left (sagittal). One robust window (0.5th–99.5th
//! percentile of the volume) maps every slice to 8 bits, so slices of a volume stay comparable.

use super::{percentile_window, window_linear, MedicalError, Plane, Slice, VolumeOptions};
use image::GrayImage;
use ndarray::{Array3, Axis};
use nifti::{InMemNiftiObject, IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions};
use std::path::Path;

/// A 3-D volume in RAS+ voxel order: `data[[r, a, s]]` grows to the patient's right, anterior, superior.
#[derive(Debug, Clone)]
pub struct CanonicalVolume {
    pub data: Array3<f32>,
}

/// The header's voxel-to-world affine (rows of a 3×4 matrix), chosen as nibabel chooses it.
pub fn affine(header: &NiftiHeader) -> [[f64; 4]; 3] {
    let f = |v: f32| f64::from(v);
    if header.sform_code > 0 {
        return [
            header.srow_x.map(f),
            header.srow_y.map(f),
            header.srow_z.map(f),
        ];
    }
    let pix = header.pixdim;
    if header.qform_code > 0 {
        // NIfTI-1 quaternion → rotation (nifti1.h, method 2).
        let (b, c, d) = (
            f(header.quatern_b),
            f(header.quatern_c),
            f(header.quatern_d),
        );
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if pix[0] < 0.0 { -1.0 } else { 1.0 };
        let zooms = [f(pix[1]), f(pix[2]), f(pix[3]) * qfac];
        let offset = [
            f(header.quatern_x),
            f(header.quatern_y),
            f(header.quatern_z),
        ];
        return std::array::from_fn(|i| {
            [
                r[i][0] * zooms[0],
                r[i][1] * zooms[1],
                r[i][2] * zooms[2],
                offset[i],
            ]
        });
    }
    // No transform: voxel sizes, axes taken as they are (nibabel's fallback centres the volume; the orientation,
    // which is all that is used here, is the same).
    [
        [f(pix[1]).abs().max(1e-6), 0.0, 0.0, 0.0],
        [0.0, f(pix[2]).abs().max(1e-6), 0.0, 0.0],
        [0.0, 0.0, f(pix[3]).abs().max(1e-6), 0.0],
    ]
}

/// For each voxel axis, the world axis (0 = R, 1 = A, 2 = S) it points along most and whether it points the
/// opposite way — nibabel's `io_orientation`, by the largest remaining component.
pub fn orientation(affine: &[[f64; 4]; 3]) -> [(usize, bool); 3] {
    let mut used = [false; 3];
    let mut out = [(0, false); 3];
    // Assign the voxel axes in order of how clearly they point somewhere.
    let mut order: Vec<usize> = (0..3).collect();
    let strength = |j: usize| {
        (0..3).map(|i| affine[i][j].abs()).fold(0.0, f64::max)
            / (0..3)
                .map(|i| affine[i][j].powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12)
    };
    order.sort_by(|&a, &b| strength(b).total_cmp(&strength(a)));
    for j in order {
        let (world, value) = (0..3)
            .filter(|i| !used[*i])
            .map(|i| (i, affine[i][j]))
            .fold((usize::MAX, 0.0f64), |best, (i, v)| {
                if best.0 == usize::MAX || v.abs() > best.1.abs() {
                    (i, v)
                } else {
                    best
                }
            });
        used[world] = true;
        out[j] = (world, value < 0.0);
    }
    out
}

/// Read a NIfTI file's `volume`-th 3-D volume, with scaling applied, reoriented to RAS+. A malformed file that
/// makes the nifti crate panic (a fuzzing find in nifti 0.18.0: a data size inconsistent with the header) is
/// reported as an error naming the file; only the crate's calls are guarded, TumorNet's own code is not.
pub fn read_canonical(path: &Path, volume: usize) -> Result<CanonicalVolume, MedicalError> {
    read_canonical_in(path, None, volume)
}

/// [`read_canonical`] of the file at `path`, or of `in_memory` (`.nii` or gzip-compressed `.nii.gz` bytes) named
/// `path`, which is then never written to disk.
pub fn read_canonical_in(
    path: &Path,
    in_memory: Option<&[u8]>,
    volume: usize,
) -> Result<CanonicalVolume, MedicalError> {
    let error = |message: String| MedicalError::Nifti {
        path: path.to_path_buf(),
        message,
    };
    let read = || -> Result<_, MedicalError> {
        let object = match in_memory {
            None => ReaderOptions::new().read_file(path),
            Some(bytes) if bytes.starts_with(&[0x1f, 0x8b]) => {
                InMemNiftiObject::from_reader(flate2::read::GzDecoder::new(bytes))
            }
            Some(bytes) => InMemNiftiObject::from_reader(bytes),
        }
        .map_err(|e| error(e.to_string()))?;
        let header = object.header().clone();
        let data = object
            .into_volume()
            .into_ndarray::<f32>()
            .map_err(|e| error(e.to_string()))?;
        Ok((header, data))
    };
    let (header, data) = super::guarded(read).unwrap_or_else(|reason| {
        Err(error(format!(
            "malformed file: the NIfTI reader failed ({reason})"
        )))
    })?;
    let shape = data.shape().to_vec();
    if shape.len() < 3 {
        return Err(error(format!(
            "{}-D data; a volume needs 3 dimensions",
            shape.len()
        )));
    }
    let volumes: usize = shape[3..].iter().product();
    if volume >= volumes {
        return Err(MedicalError::NoSuchSlice {
            path: path.to_path_buf(),
            index: volume,
            count: volumes,
            what: "volumes",
        });
    }
    // Higher dimensions flattened; take one 3-D volume.
    let (nx, ny, nz) = (shape[0], shape[1], shape[2]);
    let flat = data
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((nx, ny, nz, volumes))
        .map_err(|e| error(e.to_string()))?;
    let mut cube = flat.index_axis(Axis(3), volume).to_owned();
    let axes = orientation(&affine(&header));
    // Flip voxel axes that point backwards, then permute so that axis k runs along world axis k.
    for (j, (_, flipped)) in axes.iter().enumerate() {
        if *flipped {
            cube.invert_axis(Axis(j));
        }
    }
    let mut permutation = [0usize; 3];
    for (j, (world, _)) in axes.iter().enumerate() {
        permutation[*world] = j;
    }
    let data = cube
        .permuted_axes(permutation)
        .as_standard_layout()
        .to_owned();
    Ok(CanonicalVolume { data })
}

impl CanonicalVolume {
    /// The RAS+ axis a plane cuts across: sagittal R (0), coronal A (1), axial S (2).
    fn axis(plane: Plane) -> usize {
        match plane {
            Plane::Sagittal => 0,
            Plane::Coronal => 1,
            Plane::Axial => 2,
        }
    }

    /// Number of slices along `plane`.
    pub fn count(&self, plane: Plane) -> usize {
        self.data.shape()[Self::axis(plane)]
    }

    /// Slice `index` as displayed (row-major values, width, height). The two remaining RAS+ axes, in order,
    /// become columns and rows, both reversed: axial — rows anterior at the top, columns the patient's right on
    /// the left; coronal — superior at the top, right on the left; sagittal — superior at the top, anterior on
    /// the left.
    pub fn slice(&self, plane: Plane, index: usize) -> (Vec<f32>, usize, usize) {
        let mut view = self
            .data
            .index_axis(Axis(Self::axis(plane)), index)
            .reversed_axes(); // [rows, columns]
        view.invert_axis(Axis(0));
        view.invert_axis(Axis(1));
        let (height, width) = view.dim();
        (view.iter().copied().collect(), width, height)
    }
}

/// The chosen slices of a NIfTI volume, named `file#plane:index`.
pub fn read_slices(
    path: &Path,
    in_memory: Option<&[u8]>,
    options: &VolumeOptions,
) -> Result<Vec<Slice>, MedicalError> {
    let volume = read_canonical_in(path, in_memory, options.volume)?;
    let count = volume.count(options.plane);
    let indices = options
        .slices
        .indices(count)
        .map_err(|index| MedicalError::NoSuchSlice {
            path: path.to_path_buf(),
            index,
            count,
            what: "slices",
        })?;
    let all = volume.data.as_slice().unwrap_or(&[]);
    let flat_volume = super::flatness(all).is_some();
    if flat_volume {
        super::warn_if_flat(&format!("{}: the volume", path.display()), all);
    }
    let (center, width) = percentile_window(all);
    Ok(indices
        .into_iter()
        .map(|index| {
            let (values, w, h) = volume.slice(options.plane, index);
            let name = format!("{}#{}:{index}", path.display(), options.plane.name());
            if !flat_volume {
                super::warn_if_flat(&format!("{name}: the slice"), &values);
            }
            let bytes = window_linear(&values, center, width);
            Slice {
                name,
                path: path.to_path_buf(),
                image: GrayImage::from_raw(w as u32, h as u32, bytes)
                    .unwrap_or_else(|| GrayImage::new(w as u32, h as u32)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_of_common_affines() {
        let ras = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        assert_eq!(orientation(&ras), [(0, false), (1, false), (2, false)]);
        // LPS (DICOM-like): x to the left, y posterior.
        let lps = [
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
        ];
        assert_eq!(orientation(&lps), [(0, true), (1, true), (2, false)]);
        // Voxel axes permuted: i runs superior, j anterior, k right; slightly oblique.
        let permuted = [
            [0.0, 0.1, 1.0, 0.0],
            [0.05, 1.0, 0.0, 0.0],
            [1.0, 0.0, 0.1, 0.0],
        ];
        assert_eq!(orientation(&permuted), [(2, false), (1, false), (0, false)]);
    }

    #[test]
    fn axial_slices_put_anterior_up_and_right_on_the_left() {
        // RAS volume 3×4×2 with a marker at the right-anterior corner of slice 1.
        let mut data = Array3::<f32>::zeros((3, 4, 2));
        data[[2, 3, 1]] = 7.0;
        let volume = CanonicalVolume { data };
        let (values, w, h) = volume.slice(Plane::Axial, 1);
        assert_eq!((w, h), (3, 4));
        assert_eq!(values[0], 7.0, "top-left = most anterior, patient's right");
        let (values, w, h) = volume.slice(Plane::Sagittal, 2);
        assert_eq!((w, h), (4, 2));
        assert_eq!(values[0], 7.0, "top-left = most superior, anterior");
    }
}
