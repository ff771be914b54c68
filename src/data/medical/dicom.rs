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
            }
        })
        .collect())
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
