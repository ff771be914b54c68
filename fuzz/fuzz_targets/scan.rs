//! The dataset scanner: a folder tree built from the input (split, class and file names, file contents) must
//! scan into samples and warnings, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

const SPLITS: [&str; 4] = ["Training", "testing", "Train", "misc"];
const CLASSES: [&str; 6] = [
    "glioma",
    "meningioma_tumor",
    "notumor",
    "no_tumor",
    "PITUITARY",
    "other",
];
const NAMES: [&str; 5] = ["a.jpg", "b.png", "c.dcm", ".hidden.jpg", "d.txt"];

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    // Each 4-byte record makes one file: split, class, name, content length (from the rest of the input).
    let (records, mut rest) = data.split_at(data.len().min(64) / 4 * 4);
    for record in records.chunks(4) {
        let folder = dir
            .path()
            .join(SPLITS[record[0] as usize % SPLITS.len()])
            .join(CLASSES[record[1] as usize % CLASSES.len()]);
        if std::fs::create_dir_all(&folder).is_err() {
            return;
        }
        let take = (record[3] as usize).min(rest.len());
        let (content, tail) = rest.split_at(take);
        rest = tail;
        let name = format!(
            "{}{}",
            record[2] / 5,
            NAMES[record[2] as usize % NAMES.len()]
        );
        let _ = std::fs::write(folder.join(name), content);
    }
    for strict in [false, true] {
        let _ =
            tumornet::data::scan::scan(dir.path(), tumornet::data::scan::ScanOptions { strict });
    }
});
