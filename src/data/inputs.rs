//! Turning the paths a user typed into the list of images to read.

use super::decode::has_image_extension;
use super::Class;
use std::path::{Path, PathBuf};

/// Why the inputs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    #[error("{}: cannot list the folder: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no images found in {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Empty(Vec<PathBuf>),
    #[error("{failed} of {total} image(s) could not be read (each named above)")]
    Unreadable { failed: usize, total: usize },
}

/// Files as given, and every image file under each folder (recursively, sorted). A file named explicitly is
/// kept whatever its extension, so a wrong file gets a decode error that names it rather than being skipped.
/// Files of other types inside a folder are skipped, each named in a warning (hidden files, whose names start
/// with a dot, silently).
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
        } else if path.is_dir() {
            let mut found = Found {
                files: &mut files,
                skipped: &mut skipped,
            };
            walk(path, 0, &mut std::collections::HashSet::new(), &mut found)?;
        } else {
            return Err(InputError::NotFound(path.clone()));
        }
    }
    for path in &skipped {
        tracing::warn!(
            "skipped {}: not an image, DICOM or NIfTI file",
            path.display()
        );
    }
    if files.is_empty() {
        return Err(InputError::Empty(paths.to_vec()));
    }
    Ok(files)
}

/// What a folder walk finds: the files to read and the files of other types.
struct Found<'a> {
    files: &'a mut Vec<PathBuf>,
    skipped: &'a mut Vec<PathBuf>,
}

/// Every image under `dir`, each folder once: a symbolic link back up the tree (a loop) is not followed again.
fn walk(
    dir: &Path,
    depth: usize,
    seen: &mut std::collections::HashSet<PathBuf>,
    found: &mut Found,
) -> Result<(), InputError> {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if depth > 16 || !seen.insert(canonical) {
        return Ok(());
    }
    let io = |source| InputError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if entry.is_dir() {
            walk(&entry, depth + 1, seen, found)?;
        } else if has_image_extension(&entry) || super::medical::kind(&entry).is_some() {
            found.files.push(entry);
        } else if !hidden {
            found.skipped.push(entry);
        }
    }
    Ok(())
}

/// One image to run: a file decoded when needed, or a slice already read from a DICOM or NIfTI file.
#[derive(Debug, Clone)]
pub struct Input {
    /// The file, or the slice (`scan.nii.gz#axial:88`, `scan.dcm#frame:3`).
    pub name: String,
    /// The file it comes from.
    pub path: PathBuf,
    slice: Option<image::GrayImage>,
    /// A volume's slice: its plane and index.
    pub position: Option<(super::medical::Plane, usize)>,
    /// A volume's slice: the volume's geometry (to put results back on its voxels).
    pub geometry: Option<std::sync::Arc<super::medical::nifti::VolumeGeometry>>,
}

impl Input {
    /// A file read as one image when loaded ([`decode_file`](super::decode::decode_file): a DICOM's first frame).
    pub fn file(path: &Path) -> Input {
        Input {
            name: path.display().to_string(),
            path: path.to_path_buf(),
            slice: None,
            position: None,
            geometry: None,
        }
    }

    /// A slice read from a volume or a DICOM file.
    pub fn slice(slice: super::medical::Slice) -> Input {
        Input {
            name: slice.name,
            path: slice.path,
            slice: Some(slice.image),
            position: slice.position,
            geometry: slice.geometry,
        }
    }

    /// The image as RGB8 (grayscale slices copied to three channels).
    pub fn load(&self) -> Result<image::RgbImage, String> {
        match &self.slice {
            Some(gray) => Ok(super::medical::gray_to_rgb(gray)),
            None => super::decode::decode_file(&self.path).map_err(|e| e.to_string()),
        }
    }
}

/// Expand listed files into inputs: a DICOM or NIfTI file into its chosen slices (read now), any other file into
/// itself. A clinical file that cannot be read becomes one `Err` naming it; the rest go on.
pub fn expand(
    files: &[PathBuf],
    options: &super::medical::VolumeOptions,
) -> Vec<Result<Input, String>> {
    let mut out = Vec::with_capacity(files.len());
    let series_read;
    let files = if options.dicom_series {
        let (series, rest) = series_of(files);
        series_read = rest;
        for (folder, group) in series {
            match super::medical::dicom::read_series(&folder, group, options) {
                Ok(slices) => out.extend(slices.into_iter().map(|s| Ok(Input::slice(s)))),
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        &series_read[..]
    } else {
        files
    };
    for path in files {
        match super::medical::kind(path) {
            Some(kind) => match super::medical::read_slices(path, kind, options) {
                Ok(slices) => out.extend(slices.into_iter().map(|s| Ok(Input::slice(s)))),
                Err(e) => out.push(Err(e.to_string())),
            },
            None => out.push(Ok(Input::file(path))),
        }
    }
    out
}

/// The DICOM files among `files` that form series, per folder (see
/// [`group_series`](super::medical::dicom::group_series)), and every other file.
type SeriesGroup = Vec<(PathBuf, super::medical::dicom::SeriesTags)>;

fn series_of(files: &[PathBuf]) -> (Vec<(PathBuf, SeriesGroup)>, Vec<PathBuf>) {
    let mut by_folder: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
    let mut rest = Vec::new();
    for path in files {
        match (super::medical::kind(path), path.parent()) {
            (Some(super::medical::MedicalKind::Dicom), Some(folder)) => by_folder
                .entry(folder.to_path_buf())
                .or_default()
                .push(path.clone()),
            _ => rest.push(path.clone()),
        }
    }
    let mut series = Vec::new();
    for (folder, dicom) in by_folder {
        let (groups, alone) = super::medical::dicom::group_series(&dicom);
        let several = groups.len() > 1;
        for (n, group) in groups.into_iter().enumerate() {
            // Two series in one folder: each volume is named by the folder and its number.
            let name = if several {
                folder.join(format!("series{}", n + 1))
            } else {
                folder.clone()
            };
            series.push((name, group));
        }
        rest.extend(alone);
    }
    (series, rest)
}

/// Why [`gather`] found nothing to read.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(transparent)]
    Scan(#[from] super::scan::ScanError),
    #[error(transparent)]
    Input(#[from] InputError),
}

/// One input: where it is and what is known about it.
#[derive(Debug, Clone)]
pub struct Item {
    pub input: Input,
    pub true_class: Option<Class>,
    pub mask: Option<PathBuf>,
}

/// The inputs: a dataset folder's Testing/ split, or one split folder of a dataset (`data/Training`), with true
/// classes and masks known; else files and folders (the true class guessed from the parent folder's name), DICOM
/// and NIfTI files expanded into slices. Inputs that cannot be read come back as errors naming them.
pub fn gather(
    inputs: &[PathBuf],
    volume: &super::medical::VolumeOptions,
) -> Result<(Vec<Item>, Vec<String>), GatherError> {
    if let [input] = inputs {
        if let Some((root, chosen)) = dataset_split(input) {
            let dataset = super::scan::scan_logged(&root, false)?.dataset;
            let split =
                chosen.unwrap_or(if dataset.splits().contains(&super::scan::Split::Testing) {
                    super::scan::Split::Testing
                } else {
                    super::scan::Split::Training
                });
            // Dataset samples are single images (a DICOM: its first frame), read when their batch comes.
            let items = dataset
                .split(split)
                .map(|sample| Item {
                    input: Input::file(&sample.path),
                    true_class: Some(sample.class),
                    mask: sample.mask.clone(),
                })
                .collect();
            return Ok((items, Vec::new()));
        }
    }
    let files = collect_inputs(inputs)?;
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for input in expand(&files, volume) {
        match input {
            Ok(input) => {
                let true_class = input
                    .path
                    .parent()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str())
                    .and_then(Class::from_folder_name);
                items.push(Item {
                    input,
                    true_class,
                    mask: None,
                });
            }
            Err(e) => errors.push(e),
        }
    }
    Ok((items, errors))
}

/// A dataset root (its split chosen later), or a split folder inside one (that split), else `None`.
fn dataset_split(dir: &Path) -> Option<(PathBuf, Option<super::scan::Split>)> {
    if is_dataset(dir) {
        return Some((dir.to_path_buf(), None));
    }
    let split = super::scan::Split::from_folder_name(dir.file_name()?.to_str()?)?;
    // Only a split of class folders: a folder of images that happens to be called `test` stays a folder.
    if !has_subfolder(dir, |name| Class::from_folder_name(name).is_some()) {
        return None;
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((parent, Some(split)))
}

fn is_dataset(dir: &Path) -> bool {
    has_subfolder(dir, |name| {
        super::scan::Split::from_folder_name(name).is_some()
    })
}

/// Whether `dir` holds a folder whose name `wanted` accepts.
fn has_subfolder(dir: &Path, wanted: impl Fn(&str) -> bool) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().is_dir() && e.file_name().to_str().is_some_and(&wanted))
        })
        .unwrap_or(false)
}

/// A file-name stem not used before in this run (`name`, `name_2`, …); a slice adds its plane and index
/// (`scan_axial_88`).
pub fn unique_name(input: &Input, used: &mut std::collections::HashSet<String>) -> String {
    let file = input
        .path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let file = file.strip_suffix(".gz").unwrap_or(&file);
    let base = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let stem = match input.name.rsplit_once('#') {
        Some((_, slice)) => format!("{base}_{}", slice.replace(':', "_")),
        None => base,
    };
    let mut name = stem.clone();
    let mut n = 2;
    while !used.insert(name.clone()) {
        name = format!("{stem}_{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_folder_of_class_folders_is_read_as_that_split_of_its_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("Testing").join("glioma")).unwrap();
        std::fs::create_dir_all(root.join("Training").join("notumor")).unwrap();
        assert_eq!(dataset_split(&root), Some((root.clone(), None)));
        assert_eq!(
            dataset_split(&root.join("Testing")),
            Some((root.clone(), Some(super::super::scan::Split::Testing)))
        );
        // A folder of loose images called `test` is not a split: its images are read as files.
        let loose = dir.path().join("scans").join("test");
        std::fs::create_dir_all(&loose).unwrap();
        std::fs::write(loose.join("a.jpg"), b"not read").unwrap();
        assert_eq!(dataset_split(&loose), None);
        assert_eq!(dataset_split(&root.join("Testing").join("glioma")), None);
    }
}
