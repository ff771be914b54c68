//! The pseudo-mask recipe: every setting of the CAM → pseudo-mask chain as one typed, versioned value, with a
//! per-class table where settings differ by class. Presets are embedded from `assets/recipes/*.toml`; a user's
//! recipe is a TOML file of the same form (`tumornet recipe show best > mine.toml` starts one).

use crate::cam::occlusion::Occlusion;
use crate::cam::pseudo::{PseudoMaskConfig, Threshold};
use crate::cam::{CamLayer, CamMethod};
use crate::data::Class;
use crate::settings::{self, Preset, SettingsError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The recipe format this build writes and reads.
pub const VERSION: u32 = 1;

/// The presets, best first: `best` is the default wherever a recipe applies.
pub const PRESETS: [Preset; 2] = [
    Preset {
        name: "best",
        about: "LayerCAM (fused layers) refined by grey levels, per-class powers, occlusion confirmed by \
                deletion for pituitary tumours: the best measured masks",
        toml: include_str!("../../assets/recipes/best.toml"),
    },
    Preset {
        name: "seed",
        about: "Grad-CAM on layer4, foreground at half the maximum: the seed notebook's masks",
        toml: include_str!("../../assets/recipes/seed.toml"),
    },
];

/// The preset used when none is named.
pub const DEFAULT_PRESET: &str = "best";

/// An example of `--set` for error messages.
const SET_EXAMPLE: &str = "class.pituitary.cam_power=0.5";

/// Which class a pseudo-mask's CAM explains and whether the mask may be non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The image's label (weak supervision: image-level labels are known for the training images).
    Label,
    /// The classifier's prediction (what is known for an unlabelled image).
    Prediction,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::Label => "label",
            Gate::Prediction => "prediction",
        }
    }
}

/// How a pseudo-mask is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The recipe format ([`VERSION`]).
    pub version: u32,
    /// The class the CAM explains, and which images may get a non-empty mask.
    pub gate: Gate,
    pub cam: CamRecipe,
    pub mask: MaskRecipe,
    /// An occlusion map combined with the CAM, for the classes whose table says `occlusion = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occlusion: Option<OcclusionRecipe>,
    /// Per tumour class (`[class.pituitary]`); classes not listed keep [`ClassRecipe::default`].
    #[serde(default, rename = "class", skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<Class, ClassRecipe>,
}

/// How the class activation map is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamRecipe {
    /// `grad-cam`, `grad-cam++`, `hirescam` or `layercam`.
    pub method: CamMethod,
    /// `layer1` … `layer4`, or `fused` (layer1-3 averaged).
    pub layer: CamLayer,
    /// Input scales (multiples of the classifier's input size) whose maps are averaged (IRNet: 1, 0.5, 1.5, 2).
    pub scales: Vec<f32>,
    /// Average each map with the un-mirrored map of the mirrored image.
    pub flip_smooth: bool,
}

/// How a map becomes a mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRecipe {
    /// `fraction:F` of the map's maximum, `otsu`, `top:P` percent of the pixels, or `appearance:N` (the map
    /// refined by the image's grey levels, N EM iterations).
    #[serde(with = "as_text")]
    pub threshold: Threshold,
    /// IRNet's ignore band: map values above this and below the foreground level are left out of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_below: Option<f32>,
    /// Clear foreground outside the head.
    pub head_only: bool,
    /// Keep the largest foreground component and fill its holes.
    pub cleanup: bool,
}

/// The occlusion map: a black `patch`×`patch` square slid by `stride` pixels of the classifier's input, combined
/// with the CAM by a geometric mean in which the occlusion weighs `weight`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcclusionRecipe {
    pub patch: u32,
    pub stride: u32,
    pub weight: f32,
    /// Make masks from the CAM alone and from the combined map (and its sharpened versions), black each out of
    /// the image, and keep the one the classifier confirms.
    pub confirm_by_deletion: bool,
}

impl Default for OcclusionRecipe {
    fn default() -> Self {
        OcclusionRecipe {
            patch: 48,
            stride: 32,
            weight: Occlusion::DEFAULT_WEIGHT,
            confirm_by_deletion: false,
        }
    }
}

impl OcclusionRecipe {
    pub fn occlusion(&self) -> Occlusion {
        Occlusion {
            patch: self.patch,
            stride: self.stride,
            weight: self.weight,
        }
    }
}

/// Settings of one explained class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassRecipe {
    /// The CAM (scaled to its maximum) raised to this power before anything else: below 1 widens the mask,
    /// above 1 tightens it; 1 leaves the CAM as it is.
    pub cam_power: f32,
    /// With an `appearance:N` threshold: the posterior's foreground level instead of 0.5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posterior_level: Option<f32>,
    /// Combine this class's CAMs with the `[occlusion]` map.
    pub occlusion: bool,
    /// With `confirm_by_deletion`: extra candidates, the combined map raised to each exponent (> 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sharpen: Vec<f32>,
}

/// The settings of a class the table does not list.
static DEFAULT_CLASS: ClassRecipe = ClassRecipe {
    cam_power: 1.0,
    posterior_level: None,
    occlusion: false,
    sharpen: Vec::new(),
};

impl Default for ClassRecipe {
    fn default() -> Self {
        DEFAULT_CLASS.clone()
    }
}

impl Recipe {
    /// A preset by name or a TOML file, with `sets` applied and the result validated.
    pub fn resolve(name_or_file: &str, sets: &[String]) -> Result<Recipe, SettingsError> {
        let (recipe, origin): (Recipe, String) = settings::load(name_or_file, &PRESETS, "recipe")?;
        let recipe = if sets.is_empty() {
            recipe
        } else {
            settings::apply_sets(&recipe, sets, SET_EXAMPLE)?
        };
        recipe
            .validate()
            .map_err(|message| SettingsError::Invalid {
                origin: if sets.is_empty() {
                    origin
                } else {
                    format!("{origin} with --set")
                },
                message,
            })?;
        Ok(recipe)
    }

    /// A preset by name (validated).
    pub fn preset(name: &str) -> Result<Recipe, SettingsError> {
        Recipe::resolve(name, &[])
    }

    /// The recipe as TOML.
    pub fn to_toml(&self) -> Result<String, SettingsError> {
        settings::to_toml(self)
    }

    /// The settings of an explained class (the defaults when the table has none).
    pub fn class(&self, class: Class) -> &ClassRecipe {
        self.classes.get(&class).unwrap_or(&DEFAULT_CLASS)
    }

    /// The mask settings for an explained class.
    pub fn mask_config(&self, class: Class) -> PseudoMaskConfig {
        PseudoMaskConfig {
            threshold: self.mask.threshold,
            ignore_below: self.mask.ignore_below,
            head_only: self.mask.head_only,
            cleanup: self.mask.cleanup,
            posterior_level: self.class(class).posterior_level,
        }
    }

    /// The occlusion for an explained class, if its table asks for it.
    pub fn occlusion_for(&self, class: Class) -> Option<OcclusionRecipe> {
        self.occlusion.filter(|_| self.class(class).occlusion)
    }

    /// Every rule a recipe must keep, as a message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!(
                "version = {}: this build reads recipe version {VERSION}",
                self.version
            ));
        }
        if self.cam.scales.is_empty() || !self.cam.scales.iter().all(|s| *s > 0.0 && *s <= 4.0) {
            return Err("cam.scales: each scale must lie in (0, 4], at least one".into());
        }
        if let Some(low) = self.mask.ignore_below {
            if !(0.0..1.0).contains(&low) {
                return Err("mask.ignore_below must lie in [0, 1)".into());
            }
        }
        if let Some(o) = &self.occlusion {
            o.occlusion()
                .to_string()
                .parse::<Occlusion>()
                .map_err(|e| format!("occlusion: {e}"))?;
        }
        for (class, c) in &self.classes {
            self.validate_class(*class, c)
                .map_err(|e| format!("class.{class}.{e}"))?;
        }
        Ok(())
    }

    fn validate_class(&self, class: Class, c: &ClassRecipe) -> Result<(), String> {
        if !class.is_tumour() {
            return Err("…: notumor has no lesion; only tumour classes have settings".into());
        }
        if !(c.cam_power.is_finite() && c.cam_power > 0.0) {
            return Err("cam_power must be a positive number".into());
        }
        if let Some(level) = c.posterior_level {
            if !(level > 0.0 && level < 1.0) {
                return Err("posterior_level must lie in (0, 1)".into());
            }
            if !matches!(self.mask.threshold, Threshold::Appearance(_)) {
                return Err(
                    "posterior_level needs mask.threshold = \"appearance:N\" (it is that posterior's level)"
                        .into(),
                );
            }
        }
        if c.occlusion && self.occlusion.is_none() {
            return Err("occlusion = true needs an [occlusion] table".into());
        }
        if !c.sharpen.is_empty() {
            if !self.occlusion.is_some_and(|o| o.confirm_by_deletion) || !c.occlusion {
                return Err(
                    "sharpen needs occlusion = true for the class and occlusion.confirm_by_deletion = true"
                        .into(),
                );
            }
            if !c.sharpen.iter().all(|e| e.is_finite() && *e > 1.0) {
                return Err("sharpen: each exponent must be above 1".into());
            }
        }
        Ok(())
    }

    /// One line per setting that differs from `self` in `other` (`cam.layer: fused vs layer4`), for refusing to
    /// merge masks made by different recipes.
    pub fn differences(&self, other: &Recipe) -> Vec<String> {
        let (Ok(a), Ok(b)) = (toml::Table::try_from(self), toml::Table::try_from(other)) else {
            return vec!["the recipes cannot be compared".into()];
        };
        let mut out = Vec::new();
        diff_tables("", &a, &b, &mut out);
        out
    }
}

fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let name = format!("{prefix}{key}");
        match (a.get(key), b.get(key)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                diff_tables(&format!("{name}."), x, y, out)
            }
            (x, y) if x == y => {}
            (x, y) => out.push(format!("{name}: {} vs {}", shown(x), shown(y))),
        }
    }
}

fn shown(value: Option<&toml::Value>) -> String {
    value.map_or_else(|| "(not set)".into(), |v| v.to_string())
}

/// Serde as the type's text form (`appearance:10`).
mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_loads_validates_and_round_trips_through_toml() {
        for preset in PRESETS {
            let recipe = Recipe::preset(preset.name).unwrap();
            let text = recipe.to_toml().unwrap();
            let again: Recipe = settings::parse(&text, "round trip").unwrap();
            assert_eq!(again, recipe, "{}", preset.name);
            assert!(recipe.differences(&again).is_empty());
        }
    }

    #[test]
    fn the_best_preset_is_the_measured_chain() {
        let best = Recipe::preset("best").unwrap();
        assert_eq!(best.cam.method, CamMethod::LayerCam);
        assert_eq!(best.cam.layer, CamLayer::Fused);
        assert_eq!(best.mask.threshold, Threshold::Appearance(10));
        assert_eq!(best.class(Class::Glioma).cam_power, 0.6);
        assert_eq!(best.class(Class::Meningioma).posterior_level, Some(0.15));
        assert_eq!(
            best.mask_config(Class::Meningioma).posterior_level,
            Some(0.15)
        );
        assert_eq!(best.mask_config(Class::Glioma).posterior_level, None);
        assert!(best.occlusion_for(Class::Pituitary).is_some());
        assert!(best.occlusion_for(Class::Glioma).is_none());
        assert_eq!(best.class(Class::Pituitary).sharpen, vec![2.0, 3.0, 4.0]);
        let seed = Recipe::preset("seed").unwrap();
        assert_eq!(seed.mask.threshold, Threshold::Fraction(0.5));
        assert!(seed.occlusion_for(Class::Pituitary).is_none());
        assert_eq!(seed.class(Class::Glioma), &ClassRecipe::default());
    }

    #[test]
    fn sets_change_a_preset_and_invalid_results_name_the_key() {
        let r = Recipe::resolve(
            "seed",
            &[
                "mask.threshold=otsu".into(),
                "class.glioma.cam_power=0.7".into(),
                "cam.layer=layer3".into(),
            ],
        )
        .unwrap();
        assert_eq!(r.mask.threshold, Threshold::Otsu);
        assert_eq!(r.class(Class::Glioma).cam_power, 0.7);
        assert_eq!(r.cam.layer, CamLayer::Layer3);
        let err = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Recipe::resolve("seed", &sets).unwrap_err().to_string()
        };
        let e = err(&["cam.lyer=layer3"]);
        assert!(e.contains("lyer") && e.contains("layer"), "{e}");
        let e = err(&["mask.threshold=half"]);
        assert!(
            e.contains("mask.threshold=half") && e.contains("fraction:F"),
            "{e}"
        );
        let e = err(&["class.meningioma.posterior_level=0.2"]);
        assert!(e.contains("class.meningioma.posterior_level"), "{e}");
        assert!(e.contains("appearance"), "{e}");
        let e = err(&["class.notumor.cam_power=2"]);
        assert!(e.contains("class.notumor"), "{e}");
        let e = err(&["class.pituitary.occlusion=true"]);
        assert!(e.contains("[occlusion]"), "{e}");
        let e = err(&["cam.scales=[0]"]);
        assert!(e.contains("cam.scales"), "{e}");
        let e = err(&["occlusion.patch=16", "occlusion.stride=32"]);
        assert!(e.contains("occlusion") && e.contains("STRIDE"), "{e}");
    }

    #[test]
    fn differences_name_each_changed_key() {
        let best = Recipe::preset("best").unwrap();
        let mut other = best.clone();
        other.cam.layer = CamLayer::Layer4;
        other.classes.entry(Class::Glioma).or_default().cam_power = 0.8;
        let diff = best.differences(&other);
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff.iter().any(|d| d.starts_with("cam.layer")));
        assert!(diff.iter().any(|d| d.starts_with("class.glioma.cam_power")));
        assert_ne!(best, other);
    }
}
