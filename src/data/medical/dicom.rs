//! DICOM through dicom-rs: single files and the frames of multi-frame files. Values go through the modality LUT
//! (rescale slope/intercept), then the file's first window (centre/width) when it has one, else a robust
//! percentile window; MONOCHROME1 is inverted so that bright means dense/intense as in MONOCHROME2.

use super::{percentile_window, window_linear, MedicalError, SliceSelection};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{from_reader, open_file, DefaultDicomObject};
use dicom_pixeldata::{ConvertOptions, PixelDecoder, PixelRepresentation};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::GrayImage;
use std::io::Read;
use std::path::Path;

/// Whether `head` (a file's first bytes) has the `DICM` marker after the 128-byte preamble.
pub fn has_marker(head: &[u8]) -> bool {
    head.get(128..132) == Some(b"DICM")
}

/// Whether the file has the `DICM` marker after its 128-byte preamble.
pub fn file_has_marker(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| has_marker(&head))
}

/// One decoded frame, before windowing.
#[derive(Debug, Clone)]
pub struct Frame {
    pub rows: u32,
    pub columns: u32,
    /// Values after the modality LUT (rescale slope and intercept), row-major; the mean of the channels for
    /// colour images.
    pub values: Vec<f32>,
    /// The file's first window (centre, width), if any.
    pub window: Option<(f64, f64)>,
    /// MONOCHROME1: low values are bright.
    pub inverted: bool,
}

impl Frame {
    /// The frame as 8-bit grayscale: windowed, and inverted for MONOCHROME1.
    pub fn to_gray(&self) -> GrayImage {
        let (center, width) = self
            .window
            .unwrap_or_else(|| percentile_window(&self.values));
        let mut bytes = window_linear(&self.values, center, width);
        if self.inverted {
            for b in &mut bytes {
                *b = 255 - *b;
            }
        }
        GrayImage::from_raw(self.columns, self.rows, bytes)
            .unwrap_or_else(|| GrayImage::new(self.columns, self.rows))
    }
}

/// Walk every data element header of a DICOM file — the explicit-VR little-endian meta group, then the data set
/// in its transfer syntax, stepping into sequences and their items — and refuse a defined length that runs past
/// the end of the file, before the parser would allocate and zero that many bytes (dicom-parser 0.10 does, so a
/// few-kilobyte file could cost gigabytes). Fragments of encapsulated pixel data are stepped over by their
/// (checked) lengths; in implicit VR a sequence of defined length is stepped over whole; a deflated data set is
/// not walked; a file without the `DICM` marker is left to the parser.
pub fn check_declared_lengths(bytes: &[u8]) -> Result<(), String> {
    if !has_marker(bytes) {
        return Ok(());
    }
    let mut pos = 132usize;
    let mut explicit = true;
    let mut big_endian = false;
    let mut in_meta = true;
    let mut in_fragments = false;
    let mut syntax = String::new();
    let too_long = |group: u16, element: u16, length: u32, remaining: usize| {
        format!(
            "element ({group:04X},{element:04X}) declares {length} bytes but only {remaining} remain in the file"
        )
    };
    while pos + 8 <= bytes.len() {
        let u16_at = |at: usize, big: bool| {
            let b = [bytes[at], bytes[at + 1]];
            if big {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |at: usize, big: bool| {
            let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        if in_meta && u16_at(pos, false) != 0x0002 {
            // The meta group ends here; the data set follows in its transfer syntax.
            in_meta = false;
            match syntax.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => explicit = false,
                "1.2.840.10008.1.2.2" => big_endian = true,
                "1.2.840.10008.1.2.1.99" => return Ok(()),
                _ => {}
            }
            continue;
        }
        let big = big_endian && !in_meta;
        let (group, element) = (u16_at(pos, big), u16_at(pos + 2, big));
        if group == 0xFFFE {
            // Item or delimiter: tag and a 4-byte length, no VR.
            let length = u32_at(pos + 4, big);
            pos += 8;
            match element {
                0xE0DD => in_fragments = false,
                0xE000 if length != u32::MAX => {
                    let remaining = bytes.len() - pos;
                    if length as usize > remaining {
                        return Err(too_long(group, element, length, remaining));
                    }
                    if in_fragments {
                        pos += length as usize;
                    }
                }
                _ => {}
            }
            continue;
        }
        let (length, header, vr) = if explicit || in_meta {
            let vr = [bytes[pos + 4], bytes[pos + 5]];
            let long = matches!(
                &vr,
                b"OB"
                    | b"OD"
                    | b"OF"
                    | b"OL"
                    | b"OV"
                    | b"OW"
                    | b"SQ"
                    | b"UC"
                    | b"UR"
                    | b"UT"
                    | b"UN"
                    | b"SV"
                    | b"UV"
            );
            if long {
                if pos + 12 > bytes.len() {
                    break;
                }
                (u32_at(pos + 8, big), 12, Some(vr))
            } else {
                (u32::from(u16_at(pos + 6, big)), 8, Some(vr))
            }
        } else {
            (u32_at(pos + 4, false), 8, None)
        };
        pos += header;
        let is_sequence = vr == Some(*b"SQ");
        if length == u32::MAX {
            // Undefined length: a sequence (step into its items) or encapsulated pixel data (fragments).
            in_fragments = !is_sequence && ((group, element) == (0x7FE0, 0x0010) || vr.is_some());
            continue;
        }
        let remaining = bytes.len() - pos;
        if length as usize > remaining {
            return Err(too_long(group, element, length, remaining));
        }
        if in_meta && (group, element) == (0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&bytes[pos..pos + length as usize]).into_owned();
        }
        if !is_sequence {
            pos += length as usize;
        }
    }
    Ok(())
}

/// Parse the file at `path`, or `in_memory` (an upload, named `path`, never written to disk).
fn open(path: &Path, in_memory: Option<&[u8]>) -> Result<DefaultDicomObject, MedicalError> {
    let read;
    let bytes = match in_memory {
        Some(bytes) => bytes,
        None => {
            read = std::fs::read(path).map_err(|e| MedicalError::Dicom {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            &read
        }
    };
    check_declared_lengths(bytes).map_err(|message| MedicalError::Dicom {
        path: path.to_path_buf(),
        message,
    })?;
    // The bytes are in memory already (the walk read them): parse them rather than the file again. Past the
    // 128-byte preamble the reader expects the meta group; a file without the marker is left to `open_file`
    // (bytes without it are not a DICOM file the reader can parse).
    let parsed = if has_marker(bytes) {
        from_reader(&bytes[128..])
    } else if in_memory.is_some() {
        return Err(MedicalError::Dicom {
            path: path.to_path_buf(),
            message: "no DICM marker after the 128-byte preamble".into(),
        });
    } else {
        open_file(path)
    };
    parsed.map_err(|e| MedicalError::Dicom {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// One call into the dicom crates: a panic of theirs on a malformed file (a fuzzing find: an RLE segment that
/// overruns its frame, dicom-transfer-syntax-registry 0.10.1) is reported as an error naming the file, like any
/// other unreadable file. Only the third-party call is guarded, so a panic in TumorNet's own code stays a panic.
fn decoder<T>(
    path: &Path,
    call: impl FnOnce() -> Result<T, MedicalError>,
) -> Result<T, MedicalError> {
    super::guarded(call).unwrap_or_else(|reason| {
        Err(MedicalError::Dicom {
            path: path.to_path_buf(),
            message: format!("malformed file: the DICOM decoder failed ({reason})"),
        })
    })
}

/// Most samples a DICOM file may claim: the image pixel limit (64 Mi: e.g. 256 frames of 512×512). Decoding
/// needs several bytes per sample (the decoded buffer, then f32 values), so this bounds a file's memory to
/// about a gigabyte whatever its header says.
pub const MAX_SAMPLES: u64 = crate::data::decode::MAX_PIXELS;

/// Decode the chosen frames of a DICOM file.
pub fn read_frames(
    path: &Path,
    selection: &SliceSelection,
) -> Result<Vec<(usize, Frame)>, MedicalError> {
    read_frames_in(path, None, selection)
}

/// [`read_frames`] of the file at `path`, or of `in_memory` named `path`.
pub fn read_frames_in(
    path: &Path,
    in_memory: Option<&[u8]>,
    selection: &SliceSelection,
) -> Result<Vec<(usize, Frame)>, MedicalError> {
    let object = decoder(path, || open(path, in_memory))?;
    if object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        return Err(MedicalError::NoPixelData(path.to_path_buf()));
    }
    // Refuse a header that claims more samples than any slice stack we read (a decompression bomb) before the
    // decoder allocates for it.
    let number = |tag| {
        object
            .element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()))
    };
    let samples = number(tags::ROWS).unwrap_or(0)
        * number(tags::COLUMNS).unwrap_or(0)
        * number(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1)
        * number(tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1);
    if samples > MAX_SAMPLES {
        return Err(MedicalError::Dicom {
            path: path.to_path_buf(),
            message: format!(
                "the header claims {samples} samples (rows × columns × frames × samples per pixel), over the \
                 limit of {MAX_SAMPLES}"
            ),
        });
    }
    let syntax_uid = object.meta().transfer_syntax();
    let syntax = TransferSyntaxRegistry.get(syntax_uid);
    let unsupported = |reason: Option<String>| MedicalError::UnsupportedSyntax {
        path: path.to_path_buf(),
        syntax: match (syntax, reason) {
            (Some(ts), None) => format!("{} ({syntax_uid})", ts.name()),
            (Some(ts), Some(why)) => {
                format!("{} ({syntax_uid}) (its decoder failed: {why})", ts.name())
            }
            (None, _) => syntax_uid.to_string(),
        },
    };
    let Some(ts) = syntax.filter(|ts| ts.can_decode_all()) else {
        return Err(unsupported(None));
    };
    // A compressed syntax the registry claims but whose decoder fails (12-bit extended JPEG, say) is reported
    // as that syntax unsupported, with the decoder's reason.
    let decoded = decoder(path, || {
        object.decode_pixel_data().map_err(|e| {
            if ts.is_codec_free() {
                MedicalError::Dicom {
                    path: path.to_path_buf(),
                    message: format!("decoding pixel data: {e}"),
                }
            } else {
                unsupported(Some(e.to_string()))
            }
        })
    })?;
    let frames = decoded.number_of_frames() as usize;
    // A single-frame file is its one frame whatever the selection (which is meant for volumes and multi-frame
    // files given alongside it).
    let selection = if frames == 1 {
        &SliceSelection::All
    } else {
        selection
    };
    let indices = selection
        .indices(frames)
        .map_err(|index| MedicalError::NoSuchSlice {
            path: path.to_path_buf(),
            index,
            count: frames,
            what: "frames",
        })?;
    let window = decoded
        .window()
        .ok()
        .flatten()
        .and_then(|w| w.first())
        .filter(|w| w.width > 0.0)
        .map(|w| (w.center, w.width));
    let inverted = decoded.photometric_interpretation().as_str() == "MONOCHROME1";
    let samples = usize::from(decoded.samples_per_pixel().max(1));
    let (rows, columns) = (decoded.rows(), decoded.columns());
    indices
        .into_iter()
        .map(|index| {
            let failed = |message: String| MedicalError::Dicom {
                path: path.to_path_buf(),
                message: format!("frame {index}: {message}"),
            };
            let raw: Vec<f32> = if decoded.bits_allocated() == 32 {
                // dicom-pixeldata converts 1-, 8- and 16-bit samples; 32-bit ones (RT dose grids, some
                // parametric maps) are read here, then rescaled the same way.
                let bytes = decoder(path, || {
                    decoded
                        .frame_data(index as u32)
                        .map_err(|e| failed(e.to_string()))
                })?;
                let signed = decoded.pixel_representation() == PixelRepresentation::Signed;
                let (slope, intercept) = decoded
                    .rescale()
                    .ok()
                    .and_then(|r| r.first().map(|r| (r.slope, r.intercept)))
                    .unwrap_or((1.0, 0.0));
                bytes
                    .chunks_exact(4)
                    .map(|c| {
                        let word = [c[0], c[1], c[2], c[3]];
                        let v = if signed {
                            f64::from(i32::from_le_bytes(word))
                        } else {
                            f64::from(u32::from_le_bytes(word))
                        };
                        (v * slope + intercept) as f32
                    })
                    .collect()
            } else {
                decoder(path, || {
                    decoded
                        .to_vec_frame_with_options::<f32>(index as u32, &ConvertOptions::new())
                        .map_err(|e| failed(e.to_string()))
                })?
            };
            let values = if samples > 1 {
                raw.chunks_exact(samples)
                    .map(|px| px.iter().sum::<f32>() / samples as f32)
                    .collect()
            } else {
                raw
            };
            if values.len() != (rows * columns) as usize {
                return Err(MedicalError::Dicom {
                    path: path.to_path_buf(),
                    message: format!(
                        "frame {index} has {} values for {rows}×{columns} pixels",
                        values.len()
                    ),
                });
            }
            Ok((
                index,
                Frame {
                    rows,
                    columns,
                    values,
                    window,
                    inverted,
                },
            ))
        })
        .collect()
}

/// The chosen frames as named slices (`file.dcm` for a single-frame file, `file.dcm#frame:3` otherwise).
pub fn read_slices(
    path: &Path,
    in_memory: Option<&[u8]>,
    selection: &SliceSelection,
) -> Result<Vec<super::Slice>, MedicalError> {
    let frames = read_frames_in(path, in_memory, selection)?;
    let multi = frames.len() > 1 || frames.first().is_some_and(|(i, _)| *i > 0);
    Ok(frames
        .into_iter()
        .map(|(index, frame)| {
            let name = if multi {
                format!("{}#frame:{index}", path.display())
            } else {
                path.display().to_string()
            };
            super::warn_if_flat(&format!("{name}: the image"), &frame.values);
            super::Slice {
                name,
                path: path.to_path_buf(),
                image: frame.to_gray(),
                position: None,
                geometry: None,
            }
        })
        .collect())
}

/// Where a single-frame DICOM file sits in its series: what [`read_series`] needs to stack files into a volume.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesTags {
    pub series: String,
    /// ImagePositionPatient: the first pixel's centre (mm, LPS).
    pub position: [f64; 3],
    /// ImageOrientationPatient: the row direction (along a row, as the column index grows), then the column
    /// direction (LPS unit vectors).
    pub orientation: [f64; 6],
    /// PixelSpacing: between rows, then between columns (mm).
    pub spacing: [f64; 2],
    pub rows: u32,
    pub columns: u32,
}

impl SeriesTags {
    /// The slice normal: row direction × column direction.
    fn normal(&self) -> [f64; 3] {
        let (r, c) = (&self.orientation[..3], &self.orientation[3..]);
        [
            r[1] * c[2] - r[2] * c[1],
            r[2] * c[0] - r[0] * c[2],
            r[0] * c[1] - r[1] * c[0],
        ]
    }

    /// Whether `other` can share a volume with this file: same series, size, orientation and spacing.
    fn stacks_with(&self, other: &SeriesTags) -> bool {
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
        self.series == other.series
            && (self.rows, self.columns) == (other.rows, other.columns)
            && close(&self.orientation, &other.orientation)
            && close(&self.spacing, &other.spacing)
    }
}

/// The series tags of a single-frame DICOM file (its header only is read); `None` when it is not a DICOM file,
/// has several frames, or lacks one of the tags.
pub fn series_tags(path: &Path) -> Option<SeriesTags> {
    let object = decoder(path, || {
        dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| MedicalError::Dicom {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    })
    .ok()?;
    let element = |tag| object.element_opt(tag).ok().flatten();
    let floats = |tag| element(tag).and_then(|e| e.to_multi_float64().ok());
    let number = |tag| element(tag).and_then(|e| e.to_int::<u32>().ok());
    if number(tags::NUMBER_OF_FRAMES).unwrap_or(1) > 1 {
        return None;
    }
    let position = floats(tags::IMAGE_POSITION_PATIENT)?;
    let orientation = floats(tags::IMAGE_ORIENTATION_PATIENT)?;
    let spacing = floats(tags::PIXEL_SPACING)?;
    if position.len() != 3 || orientation.len() != 6 || spacing.len() != 2 {
        return None;
    }
    Some(SeriesTags {
        series: element(tags::SERIES_INSTANCE_UID)?
            .to_str()
            .ok()?
            .trim_end_matches('\0')
            .trim()
            .to_string(),
        position: [position[0], position[1], position[2]],
        orientation: std::array::from_fn(|i| orientation[i]),
        spacing: [spacing[0], spacing[1]],
        rows: number(tags::ROWS)?,
        columns: number(tags::COLUMNS)?,
    })
}

/// Files of one folder grouped into series (two files or more that stack, see [`SeriesTags`]); the files that
/// are in no series come back apart.
pub fn group_series(
    files: &[std::path::PathBuf],
) -> (
    Vec<Vec<(std::path::PathBuf, SeriesTags)>>,
    Vec<std::path::PathBuf>,
) {
    let mut groups: Vec<Vec<(std::path::PathBuf, SeriesTags)>> = Vec::new();
    let mut alone = Vec::new();
    for file in files {
        match series_tags(file) {
            Some(tags) => match groups.iter_mut().find(|g| g[0].1.stacks_with(&tags)) {
                Some(group) => group.push((file.clone(), tags)),
                None => groups.push(vec![(file.clone(), tags)]),
            },
            None => alone.push(file.clone()),
        }
    }
    let (series, single): (Vec<_>, Vec<_>) = groups.into_iter().partition(|g| g.len() > 1);
    alone.extend(single.into_iter().flatten().map(|(file, _)| file));
    (series, alone)
}

/// A series (files of one [`group_series`] group) as slices of one volume named by `folder`: the files ordered
/// along the slice normal, stacked as voxels (column, row, file), with the NIfTI header of that voxel grid (the
/// affine from ImagePositionPatient, ImageOrientationPatient and PixelSpacing, turned from DICOM's LPS into
/// NIfTI's RAS), then cut along the plane as a NIfTI volume is. The first file's window, if it has one, windows
/// every slice.
pub fn read_series(
    folder: &Path,
    mut files: Vec<(std::path::PathBuf, SeriesTags)>,
    options: &super::VolumeOptions,
) -> Result<Vec<super::Slice>, MedicalError> {
    let normal = files[0].1.normal();
    let along = |t: &SeriesTags| -> f64 { (0..3).map(|i| t.position[i] * normal[i]).sum() };
    files.sort_by(|a, b| along(&a.1).total_cmp(&along(&b.1)));
    let first = files[0].1.clone();
    let last = files[files.len() - 1].1.clone();
    let (columns, rows, count) = (first.columns as usize, first.rows as usize, files.len());
    let mut data = ndarray::Array3::<f32>::zeros((columns, rows, count));
    let mut window = None;
    for (k, (file, _)) in files.iter().enumerate() {
        let frames = read_frames(file, &SliceSelection::All)?;
        let Some((_, frame)) = frames.into_iter().next() else {
            return Err(MedicalError::NoPixelData(file.clone()));
        };
        if (frame.rows, frame.columns) != (first.rows, first.columns) {
            return Err(MedicalError::Dicom {
                path: file.clone(),
                message: format!(
                    "its pixel data is {}×{}, its header and series say {}×{}",
                    frame.rows, frame.columns, first.rows, first.columns
                ),
            });
        }
        if k == 0 {
            window = frame.window;
        }
        for row in 0..rows {
            for column in 0..columns {
                data[[column, row, k]] = frame.values[row * columns + column];
            }
        }
    }
    let step: [f64; 3] = if count > 1 {
        std::array::from_fn(|i| (last.position[i] - first.position[i]) / (count - 1) as f64)
    } else {
        normal
    };
    let slice_gap = step.iter().map(|v| v * v).sum::<f64>().sqrt();
    if slice_gap < 1e-6 {
        return Err(MedicalError::Dicom {
            path: folder.to_path_buf(),
            message: "the series' files all sit at the same position (ImagePositionPatient)".into(),
        });
    }
    let [row_gap, column_gap] = first.spacing;
    let o = &first.orientation;
    // LPS columns of the affine: +1 column, +1 row, +1 file, then the origin; RAS negates x and y.
    let lps: [[f64; 4]; 3] = std::array::from_fn(|i| {
        [
            o[i] * column_gap,
            o[3 + i] * row_gap,
            step[i],
            first.position[i],
        ]
    });
    let ras = |i: usize| -> [f32; 4] {
        let sign = if i < 2 { -1.0 } else { 1.0 };
        lps[i].map(|v| (sign * v) as f32)
    };
    let header = ::nifti::NiftiHeader {
        dim: [3, columns as u16, rows as u16, count as u16, 1, 1, 1, 1],
        pixdim: [
            1.0,
            column_gap as f32,
            row_gap as f32,
            slice_gap as f32,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        // Millimetres; the affine in the sform (scanner coordinates), no qform.
        xyzt_units: 2,
        qform_code: 0,
        sform_code: 1,
        srow_x: ras(0),
        srow_y: ras(1),
        srow_z: ras(2),
        ..Default::default()
    };
    super::nifti::volume_slices(folder, header, data.into_dyn(), options, window)
}

/// Where the voxels of a volume written as a DICOM series sit: voxel (column, row, file) is at
/// `origin + column × column_gap × row_direction + row × row_gap × column_direction + file × step` (mm, LPS).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesGeometry {
    pub origin: [f64; 3],
    /// ImageOrientationPatient: along a row (columns growing), then down a column (rows growing).
    pub row_direction: [f64; 3],
    pub column_direction: [f64; 3],
    /// PixelSpacing order: between rows, then between columns.
    pub spacing: [f64; 2],
    /// From one file's first pixel to the next file's.
    pub step: [f64; 3],
}

/// Identifiers of a written series: `uid` (a DICOM UID root such as `2.25.…`, at most 54 characters) makes the
/// study (`uid.1`), series (`uid.2`), frame of reference (`uid.3`) and each file's instance (`uid.4.N`).
pub struct SeriesIdentity<'a> {
    pub uid: &'a str,
    pub description: &'a str,
}

/// Write `data` (voxel `[column, row, file]`, 16-bit unsigned) as single-frame MR images `IM0001.dcm`, … in
/// `dir`, explicit VR little endian, without a window (readers window them as they choose) and without patient
/// identifiers beyond the placeholder `PHANTOM`.
pub fn write_series(
    dir: &Path,
    data: &ndarray::Array3<u16>,
    geometry: &SeriesGeometry,
    identity: &SeriesIdentity,
) -> Result<(), MedicalError> {
    use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
    let failed = |path: &Path, message: String| MedicalError::Dicom {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e.to_string()))?;
    let (columns, rows, files) = data.dim();
    let ds = |v: f64| {
        format!("{:.6}", v + 0.0)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    };
    let uid = identity.uid;
    for k in 0..files {
        let path = dir.join(format!("IM{:04}.dcm", k + 1));
        let position: [f64; 3] =
            std::array::from_fn(|i| geometry.origin[i] + k as f64 * geometry.step[i]);
        let orientation: Vec<String> = geometry
            .row_direction
            .iter()
            .chain(&geometry.column_direction)
            .map(|v| ds(*v))
            .collect();
        let mut pixels = Vec::with_capacity(rows * columns);
        for row in 0..rows {
            for column in 0..columns {
                pixels.push(data[[column, row, k]]);
            }
        }
        let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
        let strings = |tag, vr, values: Vec<String>| {
            DataElement::new(tag, vr, PrimitiveValue::Strs(values.into_iter().collect()))
        };
        let object = dicom_object::InMemDicomObject::from_element_iter([
            text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.4"),
            text(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                &format!("{uid}.4.{}", k + 1),
            ),
            text(tags::STUDY_INSTANCE_UID, VR::UI, &format!("{uid}.1")),
            text(tags::SERIES_INSTANCE_UID, VR::UI, &format!("{uid}.2")),
            text(tags::FRAME_OF_REFERENCE_UID, VR::UI, &format!("{uid}.3")),
            text(tags::MODALITY, VR::CS, "MR"),
            text(tags::PATIENT_NAME, VR::PN, "PHANTOM"),
            text(tags::PATIENT_ID, VR::LO, "PHANTOM"),
            text(tags::SERIES_DESCRIPTION, VR::LO, identity.description),
            text(tags::SERIES_NUMBER, VR::IS, "1"),
            text(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string()),
            strings(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                position.iter().map(|v| ds(*v)).collect(),
            ),
            strings(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, orientation),
            strings(
                tags::PIXEL_SPACING,
                VR::DS,
                geometry.spacing.iter().map(|v| ds(*v)).collect(),
            ),
            text(
                tags::SLICE_THICKNESS,
                VR::DS,
                &ds(geometry.step.iter().map(|v| v * v).sum::<f64>().sqrt()),
            ),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, dicom_value!(U16, 1)),
            text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            DataElement::new(tags::ROWS, VR::US, dicom_value!(U16, rows as u16)),
            DataElement::new(tags::COLUMNS, VR::US, dicom_value!(U16, columns as u16)),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, dicom_value!(U16, 16)),
            DataElement::new(tags::BITS_STORED, VR::US, dicom_value!(U16, 16)),
            DataElement::new(tags::HIGH_BIT, VR::US, dicom_value!(U16, 15)),
            DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, dicom_value!(U16, 0)),
            DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
        ]);
        let file = object
            .with_meta(
                dicom_object::FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1"),
            )
            .map_err(|e| failed(&path, e.to_string()))?;
        file.write_to_file(&path)
            .map_err(|e| failed(&path, e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preamble, `DICM`, a meta group with the transfer syntax, then one data element of `declared` bytes
    /// followed by `present` bytes.
    fn file(syntax: &str, declared: u32, present: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        let mut uid = syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        bytes.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        bytes.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&uid);
        // (0010,0010) PN in explicit VR little endian, or implicit VR (4-byte length).
        bytes.extend_from_slice(&[0x10, 0x00, 0x10, 0x00]);
        if syntax == "1.2.840.10008.1.2" {
            bytes.extend_from_slice(&declared.to_le_bytes());
        } else {
            bytes.extend_from_slice(b"PN");
            bytes.extend_from_slice(&(declared as u16).to_le_bytes());
        }
        bytes.extend(std::iter::repeat_n(b'A', present));
        bytes
    }

    #[test]
    fn declared_lengths_past_the_end_are_refused() {
        for syntax in ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"] {
            assert_eq!(
                check_declared_lengths(&file(syntax, 8, 8)),
                Ok(()),
                "{syntax}"
            );
            let error = check_declared_lengths(&file(syntax, 4000, 8)).expect_err(syntax);
            assert!(
                error.contains("(0010,0010) declares 4000 bytes but only 8 remain"),
                "{error}"
            );
        }
        // Implicit VR: a 4-byte length of 3 GB.
        assert!(check_declared_lengths(&file("1.2.840.10008.1.2", 3_000_000_000, 8)).is_err());
        // Every fixture of the test suite passes the walk.
        let medical =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/medical");
        for entry in std::fs::read_dir(medical).expect("fixtures").flatten() {
            if entry.path().extension().is_some_and(|e| e == "dcm") {
                let bytes = std::fs::read(entry.path()).expect("read");
                assert_eq!(
                    check_declared_lengths(&bytes),
                    Ok(()),
                    "{}",
                    entry.path().display()
                );
            }
        }
    }
}
