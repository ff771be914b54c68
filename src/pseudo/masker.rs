//! A recipe applied to one image at a time: the class activation maps of a classifier, made into a pseudo-mask as
//! the recipe says (its power per class, an occlusion map where it asks, the deletion check among sharpened
//! candidates). `pseudo-masks` runs it over a dataset; a segmentation run uses it to check the U-Net's masks
//! ([`Masker::confirm`]).

use super::manifest::{DeletionCandidate, DeletionRecord, SIDE};
use super::recipe::{CamRecipe, Recipe};
use crate::cam::compute_smoothed;
use crate::cam::occlusion::{combine, confirmed_by_deletion, occlusion_map, sharpened};
use crate::cam::postprocess::resize_bilinear;
use crate::cam::pseudo::{head_mask, pseudo_mask, split_labels, ImageCues};
use crate::data::batcher::images_to_tensor;
use crate::data::preprocess::resize_rgb;
use crate::data::Class;
use crate::metrics::segmentation::MaskCounts;
use crate::model::inference::Predictor;
use crate::model::run::RunConfig;
use crate::model::ResNet18;
use burn::module::Module;
use image::RgbImage;
use rayon::prelude::*;

/// A class activation map per image at 128×128 in [0, 1], with the model's probabilities and the explained class.
pub struct Cams {
    pub maps: Vec<Vec<f32>>,
    pub probabilities: Vec<Vec<f32>>,
    pub targets: Vec<usize>,
}

/// CAMs of `images` (as decoded) with `model` (on the training device): at each scale the image resized to
/// `scale × input_size`, maps finished to 128×128 and averaged over the scales (each already scaled to [0, 1],
/// as IRNet does), for `targets` (the prediction at scale 1 where `None`).
pub fn multi_scale_cams(
    model: &ResNet18,
    images: &[RgbImage],
    input_size: u32,
    cam: &CamRecipe,
    targets: &[Option<usize>],
) -> anyhow::Result<Cams> {
    let device = crate::device::training();
    let side = SIDE as usize;
    let resized = |scale: f32| -> anyhow::Result<Vec<RgbImage>> {
        let s = ((input_size as f32 * scale).round() as u32).max(32);
        images
            .par_iter()
            .map(|i| resize_rgb(i, s, s).map_err(anyhow::Error::from))
            .collect()
    };
    let at = |scale: f32, targets: &[Option<usize>]| -> anyhow::Result<_> {
        Ok(compute_smoothed(
            model,
            images_to_tensor(&resized(scale)?, &device)?,
            cam.method,
            targets,
            cam.flip_smooth,
            cam.layer,
        )?)
    };
    let first = at(1.0, targets)?;
    let mut maps = first.finished_all(side, side);
    let chosen: Vec<Option<usize>> = first.targets.iter().map(|t| Some(*t)).collect();
    let mut counted = 1.0f32;
    for &scale in cam.scales.iter().filter(|s| (**s - 1.0).abs() > 1e-6) {
        let batch = at(scale, &chosen)?;
        for (sum, map) in maps.iter_mut().zip(batch.finished_all(side, side)) {
            for (s, v) in sum.iter_mut().zip(map) {
                *s += v;
            }
        }
        counted += 1.0;
    }
    for map in &mut maps {
        for v in map.iter_mut() {
            *v /= counted;
        }
    }
    Ok(Cams {
        maps,
        probabilities: first.probabilities,
        targets: first.targets,
    })
}

/// One image's map and mask, and its deletion record where the recipe checks by deletion.
pub struct Made {
    pub map: Vec<f32>,
    /// 0 background, 255 tumour, [`crate::cam::pseudo::IGNORE`] ignored.
    pub mask: Vec<u8>,
    pub deletion: Option<DeletionRecord>,
}

/// The grey levels of `image` (as decoded) at the masks' 128×128, from which the recipe takes its cues (the head,
/// the appearance refinement).
pub fn gray_of(image: &RgbImage) -> Result<Vec<u8>, crate::data::preprocess::PreprocessError> {
    let small = resize_rgb(image, SIDE, SIDE)?;
    Ok(image::DynamicImage::ImageRgb8(small).to_luma8().into_raw())
}

/// One explained image: the image as decoded, its grey 128×128 cues, its true mask where known.
pub struct Explained<'a> {
    pub image: &'a RgbImage,
    pub cues: &'a ImageCues<'a>,
    pub truth: Option<&'a [bool]>,
    /// The class the map explains, and its index among the run's classes.
    pub target: Class,
    pub target_index: usize,
    /// p(target | image).
    pub probability: f32,
    /// The class gate: `false` gives an empty mask.
    pub tumour: bool,
}

/// A classifier twice, with the recipe that makes its maps into masks: one copy that gives gradients (for the
/// CAMs) and, when the recipe occludes or a mask is to be confirmed, one as loaded (forward passes only).
pub struct Masker {
    pub cam: ResNet18,
    pub frozen: Option<Predictor>,
    pub config: RunConfig,
    pub recipe: Recipe,
}

impl Masker {
    /// `model` as loaded (inference device); `predictor` also when the recipe does not occlude.
    pub fn new(model: &ResNet18, config: RunConfig, recipe: Recipe, predictor: bool) -> Self {
        let frozen = (predictor || recipe.occlusion.is_some()).then(|| Predictor::new(model));
        let cam = model.clone().train().fork(&crate::device::training());
        Masker {
            cam,
            frozen,
            config,
            recipe,
        }
    }

    /// CAMs of `images` (as decoded) for `targets` (the prediction where `None`), by the recipe.
    pub fn cams(&self, images: &[RgbImage], targets: &[Option<usize>]) -> anyhow::Result<Cams> {
        multi_scale_cams(
            &self.cam,
            images,
            self.config.input_size,
            &self.recipe.cam,
            targets,
        )
    }

    /// The explained class's map (its CAM raised to the class's power, combined with an occlusion map where the
    /// recipe asks) and its pseudo-mask.
    pub fn make(&self, one: &Explained, cam: &[f32]) -> anyhow::Result<Made> {
        let recipe = &self.recipe;
        let class = recipe.class(one.target);
        let config = recipe.mask_config(one.target);
        let cam: Vec<f32> = if class.cam_power != 1.0 {
            sharpened(cam, class.cam_power)
        } else {
            cam.to_vec()
        };
        let (map, deletion) = match (&self.frozen, recipe.occlusion_for(one.target)) {
            (Some(frozen), Some(occlusion)) if one.tumour => {
                let size = self.config.input_size;
                let input = resize_rgb(one.image, size, size)?;
                let device = crate::device::inference();
                let occ = occlusion_map(
                    frozen,
                    &input,
                    one.target_index,
                    one.probability,
                    occlusion.occlusion(),
                    64,
                    &device,
                )?;
                let n = input.width() as usize;
                let side = SIDE as usize;
                let combined = combine(
                    &cam,
                    &resize_bilinear(&occ, n, n, side, side),
                    occlusion.weight,
                );
                if occlusion.confirm_by_deletion {
                    let check = DeletionCheck {
                        model: frozen,
                        input: &input,
                        one,
                        config: &config,
                    };
                    let (map, record) = check.choose(cam, combined, &class.sharpen)?;
                    (map, Some(record))
                } else {
                    (combined, None)
                }
            }
            _ => (cam, None),
        };
        let side = SIDE as usize;
        let mask = pseudo_mask(&map, side, side, one.tumour, Some(one.cues), &config);
        Ok(Made {
            map,
            mask,
            deletion,
        })
    }

    /// The recipe's tumour masks (foreground flags at 128×128) of `images` (as decoded), each explaining the class
    /// `targets[i]` (an index among the run's classes); none for no images (a batch the classifier calls all
    /// tumour-free).
    pub fn tumour_masks(
        &self,
        images: &[RgbImage],
        targets: &[usize],
    ) -> anyhow::Result<Vec<Vec<bool>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let side = SIDE as usize;
        let wanted: Vec<Option<usize>> = targets.iter().map(|t| Some(*t)).collect();
        let cams = self.cams(images, &wanted)?;
        images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let gray = gray_of(image)?;
                let head = head_mask(&gray, side, side);
                let cues = ImageCues {
                    gray: &gray,
                    head: &head,
                };
                let target_index = cams.targets[i];
                let one = Explained {
                    image,
                    cues: &cues,
                    truth: None,
                    target: self.config.classes[target_index],
                    target_index,
                    probability: cams.probabilities[i][target_index],
                    tumour: true,
                };
                Ok(split_labels(&self.make(&one, &cams.maps[i])?.mask).0)
            })
            .collect()
    }

    /// Of a U-Net's tumour mask and the recipe's of the same image (`input`: at the classifier's input size,
    /// whose p(`target`) is `base`; both masks 128×128), the one the classifier confirms by the recipe's own
    /// deletion rule ([`confirmed_by_deletion`]): each is blacked out and p(`target`) read again; the smallest
    /// whose removal halves it wins, else the one whose removal lowers it most, and an empty mask never wins
    /// against a non-empty one. Returns `true` when the U-Net's mask is kept.
    pub fn confirm(
        &self,
        input: &RgbImage,
        target: usize,
        base: f32,
        unet: &[bool],
        recipe: &[bool],
    ) -> anyhow::Result<bool> {
        let Some(model) = &self.frozen else {
            anyhow::bail!("the masker was made without its forward-only classifier");
        };
        let device = crate::device::inference();
        let (kept, _) = confirmed_by_deletion(
            model,
            input,
            target,
            base,
            &[unet, recipe],
            SIDE as usize,
            &device,
        )?;
        Ok(kept == 0)
    }

    /// [`Masker::confirm`]'s choice itself: the mask kept, and whether it is the U-Net's.
    pub fn choose(
        &self,
        input: &RgbImage,
        target: usize,
        base: f32,
        unet: Vec<bool>,
        recipe: Vec<bool>,
    ) -> anyhow::Result<(Vec<bool>, bool)> {
        Ok(match self.confirm(input, target, base, &unet, &recipe)? {
            true => (unet, true),
            false => (recipe, false),
        })
    }
}

/// The deletion check of one tumour image.
struct DeletionCheck<'a> {
    model: &'a Predictor,
    /// The image at the classifier's input size.
    input: &'a RgbImage,
    one: &'a Explained<'a>,
    config: &'a crate::cam::pseudo::PseudoMaskConfig,
}

impl DeletionCheck<'_> {
    /// Of the masks of the CAM, the combined map and the combined map raised to each exponent, the one the
    /// classifier confirms ([`confirmed_by_deletion`]): its map, and the record of every candidate.
    fn choose(
        &self,
        cam: Vec<f32>,
        combined: Vec<f32>,
        exponents: &[f32],
    ) -> anyhow::Result<(Vec<f32>, DeletionRecord)> {
        let side = SIDE as usize;
        let mut names = vec!["cam".to_string(), "combined".to_string()];
        let mut maps = vec![cam, combined];
        for e in exponents {
            names.push(format!("combined^{e}"));
            maps.push(sharpened(&maps[1], *e));
        }
        let masks: Vec<Vec<bool>> = maps
            .iter()
            .map(|m| {
                split_labels(&pseudo_mask(
                    m,
                    side,
                    side,
                    true,
                    Some(self.one.cues),
                    self.config,
                ))
                .0
            })
            .collect();
        let candidates: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
        let device = crate::device::inference();
        let (kept, after) = confirmed_by_deletion(
            self.model,
            self.input,
            self.one.target_index,
            self.one.probability,
            &candidates,
            side,
            &device,
        )?;
        let record = DeletionRecord {
            probability: self.one.probability,
            kept,
            candidates: names
                .into_iter()
                .zip(&masks)
                .zip(after)
                .map(|((map, mask), probability_after)| DeletionCandidate {
                    map,
                    area: mask.iter().filter(|v| **v).count(),
                    probability_after,
                    dice: self
                        .one
                        .truth
                        .and_then(|t| MaskCounts::from_masks(mask, t, None).dice()),
                })
                .collect(),
        };
        Ok((maps.swap_remove(kept), record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::run::WeightsOrigin;

    fn masker() -> Masker {
        let device = crate::device::inference();
        let model = ResNet18::new(4, &device);
        let config = RunConfig::new("baseline", WeightsOrigin::RandomInit { seed: 0 }, 0);
        let recipe = Recipe::preset("best").expect("best");
        Masker::new(&model, config, recipe, true)
    }

    #[test]
    fn the_check_keeps_a_recipe_mask_over_an_empty_one_and_takes_no_images() {
        let masker = masker();
        // A batch the classifier calls all tumour-free asks for no masks.
        assert!(masker.tumour_masks(&[], &[]).expect("none").is_empty());
        // One mask per image, at 128×128, for each asked class (glioma 0, pituitary 3: its occlusion runs too).
        let image = RgbImage::from_fn(96, 80, |x, y| {
            let d = (x as i32 - 40).pow(2) + (y as i32 - 40).pow(2);
            image::Rgb([if d < 120 { 230 } else { (60 + x) as u8 }; 3])
        });
        let masks = masker
            .tumour_masks(&[image.clone(), image.clone()], &[0, 3])
            .expect("masks");
        assert_eq!(masks.len(), 2);
        assert!(masks.iter().all(|m| m.len() == (SIDE * SIDE) as usize));
        // Whatever the probabilities, an empty mask never wins against a non-empty one, either way round.
        let input = resize_rgb(&image, 224, 224).expect("resize");
        let side = SIDE as usize;
        let blob: Vec<bool> = (0..side * side).map(|i| (i / side) % 32 < 8).collect();
        let empty = vec![false; side * side];
        for base in [0.0, 0.5, 1.0] {
            assert!(!masker
                .confirm(&input, 0, base, &empty, &blob)
                .expect("check"));
            assert!(masker
                .confirm(&input, 0, base, &blob, &empty)
                .expect("check"));
        }
    }
}
