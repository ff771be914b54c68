//! DICOM and NIfTI input against what pydicom 3.0.2 and nibabel 5.4.2 read from the same files
//! (fixtures and reference values by tools/medical_reference.py).

use crate::common::{fixtures, import_formula_run, temp_dir, tumornet};
use std::path::{Path, PathBuf};
use tumornet::data::medical::{
    self, dicom, nifti, MedicalError, MedicalKind, Plane, SliceSelection, VolumeOptions,
};

fn dir() -> std::path::PathBuf {
    fixtures().join("medical")
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir().join("reference.json")).expect("reference"))
        .expect("json")
}

fn read_f32(name: &str) -> Vec<f32> {
    std::fs::read(dir().join(name))
        .expect("fixture")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn dicom_values_match_pydicom_in_every_supported_encoding() {
    let expected = read_f32("MR_small.frame0.f32");
    for name in [
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
    ] {
        let frames = dicom::read_frames(&dir().join(name), &SliceSelection::All)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(frames.len(), 1, "{name}");
        let frame = &frames[0].1;
        assert_eq!((frame.rows, frame.columns), (64, 64), "{name}");
        assert_eq!(
            frame.values, expected,
            "{name}: values differ from pydicom's"
        );
        assert_eq!(frame.window, Some((600.0, 1600.0)), "{name}");
        assert!(!frame.inverted);
    }
    // CT: rescale slope 1, intercept -1024 applied.
    let ct = dicom::read_frames(&dir().join("CT_small.dcm"), &SliceSelection::All).expect("ct");
    assert_eq!(ct[0].1.values, read_f32("CT_small.frame0.f32"));
    assert_eq!(ct[0].1.window, None);
}

#[test]
fn multi_frame_and_monochrome1() {
    let reference = reference();
    let r = &reference["dicom"]["rtdose.dcm"];
    let frames =
        dicom::read_frames(&dir().join("rtdose.dcm"), &SliceSelection::All).expect("rtdose");
    assert_eq!(frames.len(), 15);
    assert_eq!(frames[0].1.values, read_f32("rtdose.frame0.f32"));
    for (i, (index, frame)) in frames.iter().enumerate() {
        assert_eq!(*index, i);
        let sum: f64 = frame.values.iter().map(|v| f64::from(*v)).sum();
        let want = r["frame_sums"][i].as_f64().expect("sum");
        assert!(
            (sum - want).abs() <= want.abs() * 1e-9,
            "frame {i}: {sum} vs {want}"
        );
    }
    let slices = dicom::read_slices(
        &dir().join("rtdose.dcm"),
        None,
        &"3:4".parse().expect("range"),
    )
    .expect("slices");
    assert_eq!(slices.len(), 2);
    assert!(
        slices[0].name.ends_with("rtdose.dcm#frame:3"),
        "{}",
        slices[0].name
    );
    let single =
        dicom::read_slices(&dir().join("MR_small.dcm"), None, &SliceSelection::All).expect("mr");
    assert!(
        single[0].name.ends_with("MR_small.dcm"),
        "{}",
        single[0].name
    );

    // MONOCHROME1 is the same pixels shown inverted.
    let m1 = dicom::read_frames(
        &dir().join("MR_small_monochrome1.dcm"),
        &SliceSelection::All,
    )
    .expect("m1");
    assert!(m1[0].1.inverted);
    let plain = single[0].image.clone();
    let inverted = m1[0].1.to_gray();
    assert!(plain
        .pixels()
        .zip(inverted.pixels())
        .all(|(a, b)| a.0[0] == 255 - b.0[0]));
    // The file's window: 600 ± 800 maps the MR values (127…2145) to 8 bits as the DICOM formula says.
    let v = m1[0].1.values[0];
    let want = medical::window_linear(&[v], 600.0, 1600.0)[0];
    assert_eq!(plain.as_raw()[0], want);
}

#[test]
fn unsupported_syntaxes_truncated_and_foreign_files_are_named_errors() {
    let jls = dir().join("MR_small_jpeg_ls_lossless.dcm");
    match dicom::read_frames(&jls, &SliceSelection::All) {
        Err(e @ MedicalError::UnsupportedSyntax { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("MR_small_jpeg_ls_lossless.dcm") && text.contains("JPEG-LS"),
                "{text}"
            );
        }
        other => panic!("expected an unsupported-syntax error, got {other:?}"),
    }
    // 12-bit extended JPEG: the registry knows the syntax, its decoder cannot read 12 bits.
    let extended = dir().join("JPEG-lossy.dcm");
    match dicom::read_frames(&extended, &SliceSelection::All) {
        Err(e @ MedicalError::UnsupportedSyntax { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("JPEG-lossy.dcm") && text.contains("1.2.840.10008.1.2.4.51"),
                "{text}"
            );
        }
        other => panic!("expected an unsupported-syntax error, got {other:?}"),
    }
    let tmp = temp_dir();
    let bytes = std::fs::read(dir().join("MR_small.dcm")).expect("mr");
    let truncated = tmp.path().join("truncated.dcm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = dicom::read_frames(&truncated, &SliceSelection::All).expect_err("truncated");
    assert!(err.to_string().contains("truncated.dcm"), "{err}");
    let empty = tmp.path().join("empty.dcm");
    std::fs::write(&empty, b"").expect("write");
    assert!(dicom::read_frames(&empty, &SliceSelection::All).is_err());
    let frame = dicom::read_frames(&dir().join("rtdose.dcm"), &SliceSelection::List(vec![15]));
    assert!(matches!(
        frame,
        Err(MedicalError::NoSuchSlice {
            index: 15,
            count: 15,
            ..
        })
    ));

    let bytes = std::fs::read(dir().join("colin27_lps.nii.gz")).expect("nii");
    let cut = tmp.path().join("cut.nii.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let err = nifti::read_canonical(&cut, 0).expect_err("truncated nifti");
    assert!(err.to_string().contains("cut.nii.gz"), "{err}");

    // Kinds by name, and by the DICM marker for a file without an extension.
    let bare = tmp.path().join("IM0001");
    std::fs::write(
        &bare,
        std::fs::read(dir().join("MR_small.dcm")).expect("mr"),
    )
    .expect("write");
    assert_eq!(medical::kind(&bare), Some(MedicalKind::Dicom));
    assert_eq!(medical::kind(&cut), Some(MedicalKind::Nifti));
    assert_eq!(medical::kind(std::path::Path::new("a.jpg")), None);
}

#[test]
fn nifti_slices_match_nibabel_canonical_orientation() {
    let reference = reference();
    for (name, base) in [
        ("anatomical.nii", "anatomical"),
        ("four_d.nii.gz", "four_d"),
        ("colin27_lps.nii.gz", "colin27_lps"),
    ] {
        let r = &reference["nifti"][name];
        let path = dir().join(name);
        let header = ::nifti::NiftiHeader::from_file(&path).expect("header");
        let ours = nifti::affine(&header);
        for (i, row) in ours.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let want = r["affine"][i][j].as_f64().expect("affine");
                assert!(
                    (v - want).abs() < 1e-4,
                    "{name}: affine[{i}][{j}] {v} vs {want}"
                );
            }
        }
        let volume = nifti::read_canonical(&path, r["volume"].as_u64().expect("v") as usize)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = r["canonical_shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|v| v.as_u64().expect("dim") as usize)
            .collect();
        assert_eq!(volume.data.shape(), &shape[..], "{name}");
        for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
            let index = r[plane.name()].as_u64().expect("index") as usize;
            let (values, _, _) = volume.slice(plane, index);
            assert_eq!(
                values,
                read_f32(&format!("{base}.{}.f32", plane.name())),
                "{name} {}",
                plane.name()
            );
        }
    }
    // Names, the 4th dimension and bounds.
    let options = VolumeOptions {
        plane: Plane::Coronal,
        slices: "27".parse().expect("index"),
        volume: 0,
        dicom_series: false,
    };
    let slices =
        nifti::read_slices(&dir().join("colin27_lps.nii.gz"), None, &options).expect("slices");
    assert_eq!(slices.len(), 1);
    assert!(
        slices[0].name.ends_with("colin27_lps.nii.gz#coronal:27"),
        "{}",
        slices[0].name
    );
    assert_eq!(slices[0].image.dimensions(), (46, 46));
    // From memory (a server upload: gzip bytes and plain bytes) the same pixels come back, under the given name.
    let gz_bytes = std::fs::read(dir().join("colin27_lps.nii.gz")).expect("read");
    let in_memory =
        nifti::read_slices(Path::new("upload.nii.gz"), Some(&gz_bytes), &options).expect("memory");
    assert_eq!(in_memory[0].image, slices[0].image);
    assert_eq!(in_memory[0].name, "upload.nii.gz#coronal:27");
    let plain = std::fs::read(dir().join("anatomical.nii")).expect("read");
    let from_file =
        nifti::read_slices(&dir().join("anatomical.nii"), None, &options).expect("file");
    let from_bytes = nifti::read_slices(Path::new("x.nii"), Some(&plain), &options).expect("bytes");
    assert_eq!(from_file[0].image, from_bytes[0].image);
    let dcm = std::fs::read(dir().join("MR_small.dcm")).expect("read");
    let from_bytes =
        dicom::read_slices(Path::new("scan"), Some(&dcm), &SliceSelection::All).expect("dcm");
    let from_file =
        dicom::read_slices(&dir().join("MR_small.dcm"), None, &SliceSelection::All).expect("dcm");
    assert_eq!(from_bytes[0].image, from_file[0].image);
    assert!(
        dicom::read_slices(Path::new("scan"), Some(&dcm[128..]), &SliceSelection::All).is_err()
    );
    let err = nifti::read_canonical(&dir().join("four_d.nii.gz"), 2).expect_err("two volumes");
    assert!(
        matches!(
            err,
            MedicalError::NoSuchSlice {
                index: 2,
                count: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn predict_reads_dicom_and_nifti_one_line_per_slice() {
    let tmp = temp_dir();
    let run = import_formula_run(tmp.path());
    let out = tumornet()
        .arg("predict")
        .arg(&run)
        .arg(dir().join("colin27_lps.nii.gz"))
        .arg(dir().join("MR_small.dcm"))
        .arg(dir().join("rtdose.dcm"))
        .args(["--plane", "coronal", "--slices", "26:28"])
        .output()
        .expect("predict");
    // rtdose has 15 frames, so 26:28 does not exist there: it is named, the exit code is 3, and the others are
    // still predicted (a single-frame DICOM is its one frame whatever --slices says).
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("rtdose.dcm: slice 26 does not exist (15 frames)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(names.len(), 4, "{stdout}");
    assert!(
        names[0].ends_with("colin27_lps.nii.gz#coronal:26"),
        "{stdout}"
    );
    assert!(
        names[2].ends_with("colin27_lps.nii.gz#coronal:28"),
        "{stdout}"
    );
    assert!(names[3].ends_with("MR_small.dcm"), "{stdout}");
    let out = tumornet()
        .arg("predict")
        .arg(&run)
        .arg(dir().join("rtdose.dcm"))
        .args(["--slices", "middle", "--json"])
        .output()
        .expect("predict");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["input"]
        .as_str()
        .expect("input")
        .ends_with("rtdose.dcm#frame:7"));
}

#[test]
fn dicom_files_count_as_images_in_dataset_folders() {
    let tmp = temp_dir();
    for (split, class) in [("Training", "glioma"), ("Testing", "no_tumor")] {
        let folder = tmp.path().join(split).join(class);
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::copy(dir().join("MR_small.dcm"), folder.join("IM0001.dcm")).expect("copy");
    }
    let report = tumornet::data::scan::scan(tmp.path(), Default::default()).expect("scan");
    assert_eq!(report.dataset.samples.len(), 2, "{:?}", report.warnings);
    assert!(report
        .dataset
        .samples
        .iter()
        .all(|s| (s.width, s.height) == (64, 64)));
    let image =
        tumornet::data::decode::decode_file(&report.dataset.samples[0].path).expect("decode");
    assert_eq!(image.dimensions(), (64, 64));
}

/// A minimal NIfTI-1 file (`.nii`, float32, unit voxels, no orientation codes) of `dims` = (x, y, z) holding
/// `value(x, y, z)`, x fastest: written by hand from the NIfTI-1 header layout.
fn write_float_nifti(
    path: &Path,
    dims: (usize, usize, usize),
    value: impl Fn(usize, usize, usize) -> f32,
) {
    let mut header = vec![0u8; 352];
    header[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [
        3i16,
        dims.0 as i16,
        dims.1 as i16,
        dims.2 as i16,
        1,
        1,
        1,
        1,
    ]
    .iter()
    .enumerate()
    {
        header[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    header[70..72].copy_from_slice(&16i16.to_le_bytes()); // datatype float32
    header[72..74].copy_from_slice(&32i16.to_le_bytes()); // bitpix
    for i in 0..8 {
        header[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes()); // pixdim
    }
    header[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    header[112..116].copy_from_slice(&1f32.to_le_bytes()); // scl_slope
    header[344..348].copy_from_slice(b"n+1\0");
    for z in 0..dims.2 {
        for y in 0..dims.1 {
            for x in 0..dims.0 {
                header.extend_from_slice(&value(x, y, z).to_le_bytes());
            }
        }
    }
    std::fs::write(path, header).expect("write nifti");
}

/// Volumes without an image (all NaN, constant) and slices without one are named with a warning; files of other
/// types in a folder are listed as skipped; the rest is predicted.
#[test]
fn flat_volumes_and_slices_are_named_and_foreign_files_listed_as_skipped() {
    let tmp = temp_dir();
    let run = import_formula_run(tmp.path());
    let inputs = tmp.path().join("inputs");
    std::fs::create_dir_all(&inputs).expect("dir");
    write_float_nifti(&inputs.join("nan.nii"), (8, 8, 4), |_, _, _| f32::NAN);
    write_float_nifti(&inputs.join("flat.nii"), (8, 8, 4), |_, _, _| 7.0);
    // Contrast in slices z = 2, 3 only: z = 0 and 1 are constant.
    write_float_nifti(&inputs.join("half.nii"), (8, 8, 4), |x, _, z| {
        if z >= 2 {
            x as f32
        } else {
            0.0
        }
    });
    std::fs::write(inputs.join("notes.txt"), "not an image").expect("txt");
    std::fs::write(inputs.join(".hidden"), "x").expect("hidden");
    let out = tumornet()
        .arg("predict")
        .arg(&run)
        .arg(&inputs)
        .args(["--slices", "all"])
        .output()
        .expect("predict");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped") && stderr.contains("notes.txt"),
        "{stderr}"
    );
    assert!(!stderr.contains(".hidden"), "{stderr}");
    assert!(
        stderr.contains("nan.nii: the volume has no finite value"),
        "{stderr}"
    );
    assert!(
        stderr.contains("flat.nii: the volume is constant"),
        "{stderr}"
    );
    for z in 0..2 {
        assert!(
            stderr.contains(&format!("half.nii#axial:{z}: the slice is constant")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("half.nii#axial:2"), "{stderr}");
    // Every slice of the three volumes still gets its line.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 12);
}

/// Volume outputs line up with their input (fixtures by tools/make_orientation_fixtures.py, nibabel 5.4.2): in
/// LAS (sform and qform), LPS (qform only), LPS (sform only) and an oblique, axis-permuted SLP volume, every pixel
/// of every slice maps back to the voxel it was read from (nibabel's layout for the middle slices, our reader's for
/// all), and a mask volume written through `VolumeGeometry` keeps the input's header and puts each mask pixel on
/// exactly that voxel.
#[test]
fn volume_outputs_put_every_slice_pixel_back_on_its_voxel() {
    use tumornet::data::medical::nifti::VolumeGeometry;
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("orientation.json")).expect("orientation.json"),
    )
    .expect("json");
    let files = reference.as_object().expect("files");
    assert_eq!(files.len(), 4);
    let tmp = temp_dir();
    for (name, entry) in files {
        let path = dir().join(name);
        let geometry = VolumeGeometry::read(&path).expect("geometry");
        let [nx, ny, _] = geometry.dims;
        let linear = |[x, y, z]: [usize; 3]| (x + nx * (y + ny * z)) as f32;
        // Against nibabel: the middle slice of each plane, pixel by pixel.
        for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
            let expected = &entry[plane.name()];
            let index = expected["index"].as_u64().expect("index") as usize;
            for (row, values) in expected["voxels"]
                .as_array()
                .expect("rows")
                .iter()
                .enumerate()
            {
                for (column, value) in values.as_array().expect("row").iter().enumerate() {
                    let voxel = geometry.voxel_of(plane, index, row, column);
                    assert_eq!(
                        linear(voxel),
                        value.as_f64().expect("voxel") as f32,
                        "{name} {} {index} ({row}, {column})",
                        plane.name()
                    );
                }
            }
        }
        // Against our reader: every pixel of every slice of every plane.
        let volume = nifti::read_canonical(&path, 0).expect("volume");
        for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
            for index in 0..volume.count(plane) {
                let (values, width, _) = volume.slice(plane, index);
                for (i, value) in values.iter().enumerate() {
                    let voxel = geometry.voxel_of(plane, index, i / width, i % width);
                    assert_eq!(
                        linear(voxel),
                        *value,
                        "{name} {} {index} pixel {i}",
                        plane.name()
                    );
                }
            }
        }
        // A mask written as a volume: a checkerboard on the middle coronal slice.
        let index = volume.count(Plane::Coronal) / 2;
        let (values, width, height) = volume.slice(Plane::Coronal, index);
        let mask = image::GrayImage::from_fn(width as u32, height as u32, |x, y| {
            image::Luma([if (x + y) % 2 == 0 { 255 } else { 0 }])
        });
        let mut labels = geometry.empty_labels();
        geometry
            .place(&mut labels, Plane::Coronal, index, &mask, 1)
            .expect("place");
        let out = tmp.path().join(format!("{name}.mask.nii.gz"));
        geometry.write_labels(&out, &labels).expect("write");
        let (input, written) = (
            ::nifti::NiftiHeader::from_file(&path).expect("input header"),
            ::nifti::NiftiHeader::from_file(&out).expect("output header"),
        );
        assert_eq!(
            (
                written.sform_code,
                written.qform_code,
                written.srow_x,
                written.srow_y,
                written.srow_z
            ),
            (
                input.sform_code,
                input.qform_code,
                input.srow_x,
                input.srow_y,
                input.srow_z
            ),
            "{name}"
        );
        assert_eq!(
            (
                written.quatern_b,
                written.quatern_c,
                written.quatern_d,
                written.quatern_x,
                written.pixdim[..4].to_vec()
            ),
            (
                input.quatern_b,
                input.quatern_c,
                input.quatern_d,
                input.quatern_x,
                input.pixdim[..4].to_vec()
            ),
            "{name}"
        );
        assert_eq!(written.dim[..4], input.dim[..4], "{name}");
        assert_eq!(written.datatype, 2, "{name}: uint8 labels");
        // Read back in the file's own voxel order: set exactly at the voxels the set pixels came from.
        use ::nifti::{IntoNdArray, NiftiObject};
        let data = ::nifti::ReaderOptions::new()
            .read_file(&out)
            .expect("read")
            .into_volume()
            .into_ndarray::<f32>()
            .expect("array");
        let wanted: std::collections::HashSet<u32> = values
            .iter()
            .zip(mask.pixels())
            .filter(|(_, p)| p.0[0] > 0)
            .map(|(v, _)| *v as u32)
            .collect();
        let mut set = 0;
        for ((x, y, z), value) in data
            .view()
            .into_dimensionality::<ndarray::Ix3>()
            .expect("3-D")
            .indexed_iter()
        {
            let here = linear([x, y, z]) as u32;
            assert_eq!(
                *value == 1.0,
                wanted.contains(&here),
                "{name} voxel ({x}, {y}, {z})"
            );
            set += usize::from(*value == 1.0);
        }
        assert_eq!(set, wanted.len(), "{name}");
        // And through our reader the slice comes back as the mask.
        let again = nifti::read_canonical(&out, 0).expect("read back");
        let (back, _, _) = again.slice(Plane::Coronal, index);
        for (value, pixel) in back.iter().zip(mask.pixels()) {
            assert_eq!(*value > 0.0, pixel.0[0] > 0, "{name}");
        }
    }
}

/// `cam` on NIfTI volumes writes one float map volume per input and method with the input's header; read back
/// through the reader, each slice is the map `cam` computed for it (its raw 224×224 map resized to the slice).
#[test]
fn cam_writes_map_volumes_aligned_to_their_inputs() {
    let tmp = temp_dir();
    let run = import_formula_run(tmp.path());
    let out = tmp.path().join("cams");
    let inputs = [
        dir().join("orient_slp_sform.nii.gz"),
        dir().join("orient_lps_qform.nii.gz"),
    ];
    let status = tumornet()
        .args(["-q", "cam"])
        .arg(&run)
        .args(&inputs)
        .args(["--plane", "sagittal", "--delete-fraction", "0", "--out"])
        .arg(&out)
        .output()
        .expect("cam");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cam.json")).expect("cam.json"))
            .expect("json");
    let volumes = report["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 2);
    for input in &inputs {
        let volume = volumes
            .iter()
            .find(|v| v["input"].as_str() == Some(&input.display().to_string()))
            .expect("a volume for each input");
        let map_file = PathBuf::from(volume["map"].as_str().expect("map"));
        let (a, b) = (
            ::nifti::NiftiHeader::from_file(input).expect("input"),
            ::nifti::NiftiHeader::from_file(&map_file).expect("map"),
        );
        assert_eq!(
            (a.sform_code, a.qform_code, a.srow_x, a.srow_z),
            (b.sform_code, b.qform_code, b.srow_x, b.srow_z)
        );
        assert_eq!((a.dim[..4].to_vec(), b.datatype), (b.dim[..4].to_vec(), 16));
        let written = nifti::read_canonical(&map_file, 0).expect("map volume");
        let mut checked = 0;
        for image in report["images"].as_array().expect("images") {
            let Some(index) = image["input"]
                .as_str()
                .expect("input")
                .strip_prefix(&format!("{}#sagittal:", input.display()))
            else {
                continue;
            };
            let index: usize = index.parse().expect("index");
            let raw =
                std::fs::read(image["methods"][0]["map"].as_str().expect("npy")).expect("npy");
            let map: Vec<f32> = raw[raw.len() - 224 * 224 * 4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let (values, width, height) = written.slice(Plane::Sagittal, index);
            let resized =
                tumornet::cam::postprocess::resize_bilinear(&map, 224, 224, height, width);
            for (got, want) in values.iter().zip(&resized) {
                assert!(
                    (got - want).abs() < 1e-6,
                    "{} slice {index}: {got} vs {want}",
                    input.display()
                );
            }
            checked += 1;
        }
        assert_eq!(checked, volume["slices"].as_u64().expect("slices") as usize);
        assert_eq!(checked, written.count(Plane::Sagittal));
    }
}
