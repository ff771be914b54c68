//! Decode-once training data: every image decoded and resized to the input size once per run, and a
//! stratified validation split carved from `Training/`.

use super::stage::Augment;
use crate::data::batcher::BatchError;
use crate::data::decode::{decode_file, DecodeError};
use crate::data::preprocess::{erase, hflip, resize_rgb};
use crate::data::scan::Sample;
use crate::data::Class;
use image::RgbImage;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::path::PathBuf;

/// Preprocessed images (already `input_size`×`input_size`) with their labels.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub images: Vec<RgbImage>,
    pub labels: Vec<usize>,
    pub paths: Vec<PathBuf>,
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The image at `index`, mirrored when `flip`.
    pub fn image(&self, index: usize, flip: bool) -> RgbImage {
        if flip {
            hflip(&self.images[index])
        } else {
            self.images[index].clone()
        }
    }

    /// The image at `index` as a training step sees it: mirrored, erased and resized as `alter` says.
    pub fn augmented(&self, index: usize, alter: &Augment) -> Result<RgbImage, BatchError> {
        let mut image = self.image(index, alter.flip);
        if let Some(area) = &alter.erase {
            erase(&mut image, area);
        }
        match alter.side {
            Some(side) if side != image.width() || side != image.height() => {
                Ok(resize_rgb(&image, side, side)?)
            }
            _ => Ok(image),
        }
    }

    pub fn subset(&self, indices: &[usize]) -> Prepared {
        Prepared {
            images: indices.iter().map(|i| self.images[*i].clone()).collect(),
            labels: indices.iter().map(|i| self.labels[*i]).collect(),
            paths: indices.iter().map(|i| self.paths[*i].clone()).collect(),
        }
    }
}

/// Decode and resize `samples` in parallel; unreadable images are returned apart (each names its file).
pub fn prepare(
    samples: &[&Sample],
    size: u32,
    progress: &(dyn Fn() + Sync),
) -> (Prepared, Vec<DecodeError>) {
    let results: Vec<Result<(RgbImage, usize, PathBuf), DecodeError>> = samples
        .par_iter()
        .map(|sample| {
            let image = decode_file(&sample.path)?;
            let resized = resize_rgb(&image, size, size).map_err(|e| DecodeError::Corrupt {
                path: sample.path.clone(),
                format: "image".into(),
                message: e.to_string(),
            })?;
            progress();
            Ok((resized, sample.class.index(), sample.path.clone()))
        })
        .collect();
    let mut prepared = Prepared::default();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok((image, label, path)) => {
                prepared.images.push(image);
                prepared.labels.push(label);
                prepared.paths.push(path);
            }
            Err(e) => errors.push(e),
        }
    }
    (prepared, errors)
}

/// Split indices `0..labels.len()` into (train, validation), holding out `fraction` of each class (at least one
/// image of a class with two or more), shuffled by the seed's `split` stream.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut train = Vec::new();
    let mut validation = Vec::new();
    for class in 0..Class::COUNT {
        let mut members: Vec<usize> = (0..labels.len()).filter(|i| labels[*i] == class).collect();
        members.shuffle(&mut crate::rng::stream(seed, "split", &[class as u64]));
        let held = if members.len() >= 2 {
            ((members.len() as f64 * fraction).round() as usize)
                .clamp(usize::from(fraction > 0.0), members.len() - 1)
        } else {
            0
        };
        validation.extend_from_slice(&members[..held]);
        train.extend_from_slice(&members[held..]);
    }
    train.sort_unstable();
    validation.sort_unstable();
    (train, validation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_disjoint_and_reproducible() {
        let labels: Vec<usize> = (0..100)
            .map(|i| {
                if i < 40 {
                    0
                } else if i < 70 {
                    1
                } else if i < 90 {
                    2
                } else {
                    3
                }
            })
            .collect();
        let (train, val) = stratified_split(&labels, 0.1, 5);
        assert_eq!(train.len() + val.len(), 100);
        assert!(train.iter().all(|i| !val.contains(i)));
        let per_class = |set: &[usize], c| set.iter().filter(|i| labels[**i] == c).count();
        assert_eq!([0, 1, 2, 3].map(|c| per_class(&val, c)), [4, 3, 2, 1]);
        assert_eq!(
            stratified_split(&labels, 0.1, 5),
            (train.clone(), val.clone())
        );
        assert_ne!(stratified_split(&labels, 0.1, 6).1, val);
    }

    #[test]
    fn augmented_mirrors_then_resizes_to_the_batch_side() {
        // A 224×224 image, white on its left half.
        let image = RgbImage::from_fn(224, 224, |x, _| {
            image::Rgb([if x < 112 { 255 } else { 0 }; 3])
        });
        let prepared = Prepared {
            images: vec![image.clone()],
            labels: vec![0],
            paths: vec![PathBuf::from("a.png")],
        };
        let alter = |flip, side| Augment {
            flip,
            erase: None,
            side,
        };
        let small = prepared
            .augmented(0, &alter(true, Some(112)))
            .expect("resize");
        assert_eq!(small.dimensions(), (112, 112));
        // Mirrored: white on the right half now, away from the seam.
        assert_eq!(small.get_pixel(100, 50).0, [255; 3]);
        assert_eq!(small.get_pixel(10, 50).0, [0; 3]);
        // The input size itself, or no side: the image as it is.
        assert_eq!(
            prepared
                .augmented(0, &alter(false, Some(224)))
                .expect("same"),
            image
        );
        assert_eq!(
            prepared.augmented(0, &alter(false, None)).expect("none"),
            image
        );
    }
}
