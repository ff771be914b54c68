//! Image decode + preprocess: any bytes under any of the extensions the scanner accepts must give an image or a
//! DecodeError, never a panic or an unbounded allocation; a decoded image must survive the classifier's and the
//! U-Net's preprocessing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const NAMES: [&str; 6] = ["x.jpg", "x.png", "x.bmp", "x.gif", "x.tif", "x.jpeg"];

fuzz_target!(|data: &[u8]| {
    let Some((first, bytes)) = data.split_first() else {
        return;
    };
    let name = Path::new(NAMES[*first as usize % NAMES.len()]);
    if let Ok(image) = tumornet::data::decode::decode_bytes(bytes, name) {
        let _ = tumornet::data::preprocess::classifier_input(&image, first & 1 == 1);
        let _ = tumornet::data::preprocess::segmentation_input(&image, false);
    }
});
