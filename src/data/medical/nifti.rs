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

/// Where a NIfTI file's voxels go when it is read: enough to put each slice pixel back on the voxel it came
/// from and to write a volume (a mask, a heatmap) that a viewer overlays on the input with no adjustment — the
/// input's dimensions, voxel order, sform and qform.
#[derive(Debug, Clone)]
pub struct VolumeGeometry {
    pub header: NiftiHeader,
    /// The voxel dimensions of the file (x, y, z), in its own order.
    pub dims: [usize; 3],
    /// Per voxel axis: the RAS+ axis it was turned into, and whether it was reversed (see [`orientation`]).
    axes: [(usize, bool); 3],
}

impl VolumeGeometry {
    /// The geometry of the NIfTI file at `path` (its header only is read).
    pub fn read(path: &Path) -> Result<VolumeGeometry, MedicalError> {
        let header = NiftiHeader::from_file(path).map_err(|e| MedicalError::Nifti {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let dims = [1, 2, 3].map(|i| usize::from(header.dim[i].max(1)));
        let axes = orientation(&affine(&header));
        Ok(VolumeGeometry { header, dims, axes })
    }

    /// The geometry a header describes.
    pub fn from_header(header: NiftiHeader) -> VolumeGeometry {
        let dims = [1, 2, 3].map(|i| usize::from(header.dim[i].max(1)));
        let axes = orientation(&affine(&header));
        VolumeGeometry { header, dims, axes }
    }

    /// The shape of the RAS+ view [`Self::to_canonical`] gives.
    pub fn canonical_dims(&self) -> [usize; 3] {
        [0, 1, 2].map(|world| self.canonical_size(world))
    }

    /// The size of the RAS+ volume along RAS+ axis `world`.
    fn canonical_size(&self, world: usize) -> usize {
        self.axes
            .iter()
            .position(|(w, _)| *w == world)
            .map_or(1, |j| self.dims[j])
    }

    /// The two RAS+ axes a slice across `plane` spans, in order: its columns run along the first, reversed, and
    /// its rows along the second, reversed (see [`CanonicalVolume::slice`]).
    fn spanned(plane: Plane) -> (usize, usize) {
        match CanonicalVolume::axis(plane) {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        }
    }

    /// The voxel (x, y, z of the file) that pixel (`row`, `column`) of slice `index` along `plane` was read from —
    /// the inverse of [`CanonicalVolume::slice`] and of the reorientation in [`read_canonical`].
    pub fn voxel_of(&self, plane: Plane, index: usize, row: usize, column: usize) -> [usize; 3] {
        let (a, b) = Self::spanned(plane);
        let mut canonical = [0usize; 3];
        canonical[CanonicalVolume::axis(plane)] = index;
        canonical[a] = self.canonical_size(a) - 1 - column;
        canonical[b] = self.canonical_size(b) - 1 - row;
        std::array::from_fn(|j| {
            let (world, reversed) = self.axes[j];
            if reversed {
                self.dims[j] - 1 - canonical[world]
            } else {
                canonical[world]
            }
        })
    }

    /// An empty label volume of the file's shape.
    pub fn empty_labels(&self) -> Array3<u8> {
        self.empty()
    }

    /// A volume of the file's shape filled with `T::default()`.
    pub fn empty<T: Clone + Default>(&self) -> Array3<T> {
        Array3::from_elem((self.dims[0], self.dims[1], self.dims[2]), T::default())
    }

    /// Set the voxels of `volume` where `mask` (slice `index` along `plane`, at the slice's size; non-zero inside)
    /// is set, to `label`. A mask of another size than the slice is an error naming both sizes.
    pub fn place(
        &self,
        volume: &mut Array3<u8>,
        plane: Plane,
        index: usize,
        mask: &GrayImage,
        label: u8,
    ) -> Result<(), String> {
        let (width, height) = mask.dimensions();
        self.fill(
            volume,
            plane,
            index,
            (width as usize, height as usize),
            |row, column| (mask.get_pixel(column as u32, row as u32).0[0] > 0).then_some(label),
        )
    }

    /// Set each voxel of slice `index` along `plane` (of `size` = (width, height), the slice's size) to what
    /// `value(row, column)` gives, where it gives something.
    pub fn fill<T>(
        &self,
        volume: &mut Array3<T>,
        plane: Plane,
        index: usize,
        size: (usize, usize),
        value: impl Fn(usize, usize) -> Option<T>,
    ) -> Result<(), String> {
        let (a, b) = Self::spanned(plane);
        let expected = (self.canonical_size(a), self.canonical_size(b));
        if size != expected || index >= self.canonical_size(CanonicalVolume::axis(plane)) {
            return Err(format!(
                "a {}×{} result for slice {index} of a volume whose {} slices are {}×{} ({} of them)",
                size.0,
                size.1,
                plane.name(),
                expected.0,
                expected.1,
                self.canonical_size(CanonicalVolume::axis(plane))
            ));
        }
        for row in 0..size.1 {
            for column in 0..size.0 {
                if let Some(v) = value(row, column) {
                    let [x, y, z] = self.voxel_of(plane, index, row, column);
                    volume[[x, y, z]] = v;
                }
            }
        }
        Ok(())
    }

    /// `data` (in the file's voxel order) turned into RAS+ voxel order — the order every reader's canonical view
    /// shares — with the voxel sizes (mm) along its axes.
    pub fn to_canonical<T: Clone>(&self, data: &Array3<T>) -> (Array3<T>, [f64; 3]) {
        let mut cube = data.view();
        for (j, (_, flipped)) in self.axes.iter().enumerate() {
            if *flipped {
                cube.invert_axis(Axis(j));
            }
        }
        let mut permutation = [0usize; 3];
        for (j, (world, _)) in self.axes.iter().enumerate() {
            permutation[*world] = j;
        }
        let spacing = self.spacing();
        (
            cube.permuted_axes(permutation)
                .as_standard_layout()
                .to_owned(),
            permutation.map(|j| spacing[j]),
        )
    }

    /// The voxel-to-world affine of the RAS+ view [`Self::to_canonical`] gives: two files whose canonical affines
    /// and shapes agree hold the same grid, whatever their voxel orders.
    pub fn canonical_affine(&self) -> [[f64; 4]; 3] {
        let a = affine(&self.header);
        let mut out = [[0f64; 4]; 3];
        for (j, (world, flipped)) in self.axes.iter().enumerate() {
            let sign = if *flipped { -1.0 } else { 1.0 };
            for i in 0..3 {
                out[i][*world] = sign * a[i][j];
            }
        }
        // The canonical origin is the file voxel at the far end of every reversed axis.
        let origin: [f64; 3] = std::array::from_fn(|j| {
            if self.axes[j].1 {
                (self.dims[j] - 1) as f64
            } else {
                0.0
            }
        });
        for (i, row) in out.iter_mut().enumerate() {
            row[3] = a[i][3] + (0..3).map(|j| a[i][j] * origin[j]).sum::<f64>();
        }
        out
    }

    /// Voxel sizes (mm) along the file's x, y, z.
    pub fn spacing(&self) -> [f64; 3] {
        std::array::from_fn(|i| f64::from(self.header.pixdim[i + 1]).abs())
    }

    /// The volume of one voxel in millilitres (from the header's voxel sizes in millimetres).
    pub fn voxel_ml(&self) -> f64 {
        let pix = self.header.pixdim;
        (1..4).map(|i| f64::from(pix[i]).abs()).product::<f64>() / 1000.0
    }

    /// The geometry of a NIfTI file held in memory (`.nii` or gzip-compressed bytes), `name` naming it in errors.
    pub fn from_bytes(name: &Path, bytes: &[u8]) -> Result<VolumeGeometry, MedicalError> {
        let header = if bytes.starts_with(&[0x1f, 0x8b]) {
            NiftiHeader::from_reader(flate2::read::GzDecoder::new(bytes))
        } else {
            NiftiHeader::from_reader(bytes)
        }
        .map_err(|e| MedicalError::Nifti {
            path: name.to_path_buf(),
            message: e.to_string(),
        })?;
        let dims = [1, 2, 3].map(|i| usize::from(header.dim[i].max(1)));
        let axes = orientation(&affine(&header));
        Ok(VolumeGeometry { header, dims, axes })
    }

    /// Write a label volume (indexed by the file's own voxel order, shaped as [`Self::dims`]) as a NIfTI-1 file
    /// with the input's header: its sform, qform, voxel sizes and units (`.nii.gz` is compressed).
    pub fn write_labels(&self, path: &Path, data: &Array3<u8>) -> Result<(), MedicalError> {
        let bytes = self.nifti_bytes(2, 8, data, |v| vec![*v]);
        write_file(path, bytes)
    }

    /// [`Self::write_labels`] for a float volume (a heatmap).
    pub fn write_values(&self, path: &Path, data: &Array3<f32>) -> Result<(), MedicalError> {
        let bytes = self.nifti_bytes(16, 32, data, |v| v.to_le_bytes().to_vec());
        write_file(path, bytes)
    }

    /// A label volume as `.nii.gz` bytes, in memory (what the server answers with).
    pub fn labels_nii_gz(&self, data: &Array3<u8>) -> Result<Vec<u8>, std::io::Error> {
        gzip(&self.nifti_bytes(2, 8, data, |v| vec![*v]))
    }

    /// A NIfTI-1 single file (`.nii`), little-endian: the input's header with this data type, unit scaling and
    /// the volume's dimensions, then the voxels with x fastest.
    fn nifti_bytes<T>(
        &self,
        datatype: i16,
        bitpix: i16,
        data: &Array3<T>,
        encode: impl Fn(&T) -> Vec<u8>,
    ) -> Vec<u8> {
        let h = &self.header;
        let mut out: Vec<u8> =
            Vec::with_capacity(352 + data.len() * usize::from(bitpix as u16 / 8));
        let i16s = |out: &mut Vec<u8>, v: i16| out.extend_from_slice(&v.to_le_bytes());
        let f32s = |out: &mut Vec<u8>, v: f32| out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&348i32.to_le_bytes());
        out.extend_from_slice(&h.data_type);
        out.extend_from_slice(&h.db_name);
        out.extend_from_slice(&h.extents.to_le_bytes());
        i16s(&mut out, h.session_error);
        out.extend_from_slice(&[h.regular, h.dim_info]);
        let mut dim = [3u16, 1, 1, 1, 1, 1, 1, 1];
        for (i, d) in self.dims.iter().enumerate() {
            dim[i + 1] = u16::try_from(*d).unwrap_or(u16::MAX);
        }
        dim.iter()
            .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        [h.intent_p1, h.intent_p2, h.intent_p3]
            .iter()
            .for_each(|v| f32s(&mut out, *v));
        [h.intent_code, datatype, bitpix, h.slice_start]
            .iter()
            .for_each(|v| i16s(&mut out, *v));
        h.pixdim.iter().for_each(|v| f32s(&mut out, *v));
        // vox_offset, scl_slope, scl_inter
        [352.0, 1.0, 0.0].iter().for_each(|v| f32s(&mut out, *v));
        i16s(&mut out, h.slice_end);
        out.extend_from_slice(&[h.slice_code, h.xyzt_units]);
        // cal_max, cal_min, slice_duration, toffset
        [0.0, 0.0, h.slice_duration, h.toffset]
            .iter()
            .for_each(|v| f32s(&mut out, *v));
        out.extend_from_slice(&h.glmax.to_le_bytes());
        out.extend_from_slice(&h.glmin.to_le_bytes());
        let mut descrip = [0u8; 80];
        let n = h.descrip.len().min(80);
        descrip[..n].copy_from_slice(&h.descrip[..n]);
        out.extend_from_slice(&descrip);
        out.extend_from_slice(&h.aux_file);
        [h.qform_code, h.sform_code]
            .iter()
            .for_each(|v| i16s(&mut out, *v));
        [
            h.quatern_b,
            h.quatern_c,
            h.quatern_d,
            h.quatern_x,
            h.quatern_y,
            h.quatern_z,
        ]
        .iter()
        .chain(&h.srow_x)
        .chain(&h.srow_y)
        .chain(&h.srow_z)
        .for_each(|v| f32s(&mut out, *v));
        out.extend_from_slice(&h.intent_name);
        out.extend_from_slice(b"n+1\0");
        // No extensions.
        out.extend_from_slice(&[0, 0, 0, 0]);
        let [nx, ny, nz] = self.dims;
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    out.extend_from_slice(&encode(&data[[x, y, z]]));
                }
            }
        }
        out
    }
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Write `bytes` (a `.nii`) to `path`, gzip-compressed when the name ends in `.gz`.
fn write_file(path: &Path, bytes: Vec<u8>) -> Result<(), MedicalError> {
    let error = |e: std::io::Error| MedicalError::Nifti {
        path: path.to_path_buf(),
        message: format!("writing: {e}"),
    };
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let bytes = if gz {
        gzip(&bytes).map_err(error)?
    } else {
        bytes
    };
    std::fs::write(path, bytes).map_err(error)
}

/// Per-slice results of NIfTI inputs gathered back into one volume per input file, in the file's voxel order.
#[derive(Debug, Default)]
pub struct SliceVolumes<T> {
    volumes: std::collections::BTreeMap<std::path::PathBuf, (VolumeGeometry, Array3<T>, usize)>,
}

impl<T: Clone + Default> SliceVolumes<T> {
    pub fn new() -> Self {
        SliceVolumes {
            volumes: std::collections::BTreeMap::new(),
        }
    }

    /// Put slice `index` along `plane` of the volume `input` (a NIfTI file or a DICOM series' folder, of that
    /// `geometry`; a result of `size` = (width, height), the slice's size) into its volume: each voxel gets `value(row, column)` where it gives something.
    pub fn add(
        &mut self,
        input: &Path,
        geometry: &VolumeGeometry,
        plane: Plane,
        index: usize,
        size: (usize, usize),
        value: impl Fn(usize, usize) -> Option<T>,
    ) -> Result<(), String> {
        if !self.volumes.contains_key(input) {
            let empty = geometry.empty();
            self.volumes
                .insert(input.to_path_buf(), (geometry.clone(), empty, 0));
        }
        let Some((geometry, volume, slices)) = self.volumes.get_mut(input) else {
            return Ok(());
        };
        geometry.fill(volume, plane, index, size, value)?;
        *slices += 1;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }

    /// Each input with its geometry, its volume and how many slices went into it, by input path.
    pub fn into_volumes(
        self,
    ) -> impl Iterator<Item = (std::path::PathBuf, VolumeGeometry, Array3<T>, usize)> {
        self.volumes
            .into_iter()
            .map(|(path, (geometry, volume, slices))| (path, geometry, volume, slices))
    }
}

/// The true mask of the NIfTI input `input`: `truth` itself when it is a file, else the one NIfTI file under the
/// folder `truth` (searched recursively) with the input's stem.
pub fn find_truth(truth: &Path, input: &Path) -> Result<std::path::PathBuf, String> {
    if truth.is_file() {
        return Ok(truth.to_path_buf());
    }
    let stem = volume_stem(input);
    let mut found = Vec::new();
    let mut folders = vec![truth.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| format!("reading the truth folder {}: {e}", folder.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if super::kind_by_name(&path) == Some(super::MedicalKind::Nifti)
                && volume_stem(&path) == stem
            {
                found.push(path);
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "no {stem}.nii or {stem}.nii.gz under {}",
            truth.display()
        )),
        n => Err(format!(
            "{n} files named {stem}.nii(.gz) under {}",
            truth.display()
        )),
    }
}

/// A mask volume (non-zero inside) in RAS+ voxel order, which must lie on the same grid as a volume of
/// `geometry` (same shape and voxel positions within 0.01 mm, in whatever voxel order).
pub fn read_mask_on(path: &Path, geometry: &VolumeGeometry) -> Result<Array3<bool>, MedicalError> {
    let (header, data) = read_object(path, None)?;
    let error = |message: String| MedicalError::Nifti {
        path: path.to_path_buf(),
        message,
    };
    let cube = volume_of(path, data, 0)?.mapv(|v| v > 0.5);
    let own = VolumeGeometry::from_header(header);
    let (canonical, _) = own.to_canonical(&cube);
    let (a, b) = (own.canonical_affine(), geometry.canonical_affine());
    let same_grid = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .all(|(x, y)| (x - y).abs() < 0.01);
    if own.canonical_dims() != geometry.canonical_dims() || !same_grid {
        return Err(error(format!(
            "the mask's voxel grid ({:?} voxels) is not the volume's ({:?}): resample it onto the volume first",
            own.dims, geometry.dims
        )));
    }
    Ok(canonical)
}

/// A NIfTI file's name without `.nii` or `.nii.gz`, for the volumes made from it.
pub fn volume_stem(path: &Path) -> String {
    let file = path
        .file_name()
        .map_or_else(|| "volume".into(), |n| n.to_string_lossy().into_owned());
    let file = file.strip_suffix(".gz").unwrap_or(&file);
    file.strip_suffix(".nii").unwrap_or(file).to_string()
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

/// The header and the voxels (scaling applied, in the file's order) of the NIfTI file at `path` or of `in_memory`
/// named `path`; a panic of the nifti crate on a malformed file is reported as an error naming the file.
fn read_object(
    path: &Path,
    in_memory: Option<&[u8]>,
) -> Result<(NiftiHeader, ndarray::ArrayD<f32>), MedicalError> {
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
    super::guarded(read).unwrap_or_else(|reason| {
        Err(error(format!(
            "malformed file: the NIfTI reader failed ({reason})"
        )))
    })
}

/// The first 3-D volume of a NIfTI file in its own voxel order, with the header's voxel-to-world affine (as
/// [`affine`] chooses it).
pub fn read_with_affine(path: &Path) -> Result<(Array3<f32>, [[f64; 4]; 3]), MedicalError> {
    let (header, data) = read_object(path, None)?;
    let cube = volume_of(path, data, 0)?;
    Ok((cube, affine(&header)))
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
    let (header, data) = read_object(path, in_memory)?;
    canonical(path, &header, data, volume)
}

/// Volume `volume` of `data` (in the file's voxel order, as `header` describes it) reoriented to RAS+.
fn canonical(
    path: &Path,
    header: &NiftiHeader,
    data: ndarray::ArrayD<f32>,
    volume: usize,
) -> Result<CanonicalVolume, MedicalError> {
    let cube = volume_of(path, data, volume)?;
    let (data, _) = VolumeGeometry::from_header(header.clone()).to_canonical(&cube);
    Ok(CanonicalVolume { data })
}

/// Volume `index` of a NIfTI file's data (dimensions past the third flattened) in the file's voxel order.
fn volume_of(
    path: &Path,
    data: ndarray::ArrayD<f32>,
    index: usize,
) -> Result<Array3<f32>, MedicalError> {
    let error = |message: String| MedicalError::Nifti {
        path: path.to_path_buf(),
        message,
    };
    let shape = data.shape().to_vec();
    if shape.len() < 3 {
        return Err(error(format!(
            "{}-D data; a volume needs 3 dimensions",
            shape.len()
        )));
    }
    let volumes: usize = shape[3..].iter().product();
    if index >= volumes {
        return Err(MedicalError::NoSuchSlice {
            path: path.to_path_buf(),
            index,
            count: volumes,
            what: "volumes",
        });
    }
    Ok(data
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((shape[0], shape[1], shape[2], volumes))
        .map_err(|e| error(e.to_string()))?
        .index_axis(Axis(3), index)
        .to_owned())
}

impl CanonicalVolume {
    /// The RAS+ axis a plane cuts across: sagittal R (0), coronal A (1), axial S (2).
    pub fn axis(plane: Plane) -> usize {
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
    let (header, data) = read_object(path, in_memory)?;
    volume_slices(path, header, data, options, None)
}

/// The chosen slices of a volume read from `path` (a NIfTI file, or a DICOM series' folder): `data` in the
/// voxel order `header` describes, reoriented to RAS+, cut along the plane and windowed by `window` (centre,
/// width) or else the volume's robust percentile window. Each slice carries the geometry that puts its pixels
/// back on their voxels.
pub fn volume_slices(
    path: &Path,
    header: NiftiHeader,
    data: ndarray::ArrayD<f32>,
    options: &VolumeOptions,
    window: Option<(f64, f64)>,
) -> Result<Vec<Slice>, MedicalError> {
    let geometry = std::sync::Arc::new(VolumeGeometry::from_header(header));
    let (data, _) = geometry.to_canonical(&volume_of(path, data, options.volume)?);
    let volume = CanonicalVolume { data };
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
    let (center, width) = window.unwrap_or_else(|| percentile_window(all));
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
                position: Some((options.plane, index)),
                geometry: Some(geometry.clone()),
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
