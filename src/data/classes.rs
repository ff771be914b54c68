//! The four classes, their fixed order and every folder name that means them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A tumour class. The discriminant is the class index the model uses.
///
/// The order is what torchvision's `ImageFolder` gives for the Kaggle folder names (it sorts them):
/// `glioma` < `meningioma` < `notumor` < `pituitary`. The SARTAJ names (`glioma_tumor`, `no_tumor`, …) sort the
/// same way, so a model trained on either layout has the same head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Glioma = 0,
    Meningioma = 1,
    #[serde(rename = "notumor")]
    NoTumor = 2,
    Pituitary = 3,
}

impl Class {
    /// All classes in index order.
    pub const ALL: [Class; 4] = [
        Class::Glioma,
        Class::Meningioma,
        Class::NoTumor,
        Class::Pituitary,
    ];

    /// Number of classes.
    pub const COUNT: usize = 4;

    /// The class index used by the model head.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class with this index, if any.
    pub fn from_index(index: usize) -> Option<Class> {
        Class::ALL.get(index).copied()
    }

    /// The Kaggle folder name (`glioma`, `meningioma`, `notumor`, `pituitary`).
    pub fn folder_name(self) -> &'static str {
        match self {
            Class::Glioma => "glioma",
            Class::Meningioma => "meningioma",
            Class::NoTumor => "notumor",
            Class::Pituitary => "pituitary",
        }
    }

    /// The two-letter code in Kaggle file names (`Tr-gl_0001.jpg`).
    pub fn file_code(self) -> &'static str {
        match self {
            Class::Glioma => "gl",
            Class::Meningioma => "me",
            Class::NoTumor => "no",
            Class::Pituitary => "pi",
        }
    }

    /// Whether this class has a lesion (and so a non-empty mask).
    pub fn is_tumour(self) -> bool {
        self != Class::NoTumor
    }

    /// Recognise a class folder name: the Kaggle names, the SARTAJ names (`glioma_tumor`, `no_tumor`, …), spaces,
    /// dashes or underscores between words, any case.
    pub fn from_folder_name(name: &str) -> Option<Class> {
        let key: String = name
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        let stripped = key
            .strip_suffix("tumor")
            .or_else(|| key.strip_suffix("tumour"));
        match (stripped.unwrap_or(&key), stripped.is_some()) {
            ("glioma", _) => Some(Class::Glioma),
            ("meningioma", _) => Some(Class::Meningioma),
            ("pituitary", _) => Some(Class::Pituitary),
            ("no", true) => Some(Class::NoTumor),
            _ => None,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.folder_name())
    }
}

impl std::str::FromStr for Class {
    type Err = String;

    /// Any name [`Class::from_folder_name`] recognises.
    fn from_str(s: &str) -> Result<Class, String> {
        Class::from_folder_name(s).ok_or_else(|| {
            format!("unknown class {s:?}; expected glioma, meningioma, notumor or pituitary")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaggle_and_sartaj_names_map_to_the_same_classes() {
        let cases = [
            ("glioma", Class::Glioma),
            ("Glioma", Class::Glioma),
            ("glioma_tumor", Class::Glioma),
            ("GLIOMA_TUMOR", Class::Glioma),
            ("meningioma", Class::Meningioma),
            ("Meningioma_Tumor", Class::Meningioma),
            ("notumor", Class::NoTumor),
            ("no_tumor", Class::NoTumor),
            ("No Tumor", Class::NoTumor),
            ("NoTumour", Class::NoTumor),
            ("pituitary", Class::Pituitary),
            ("pituitary_tumor", Class::Pituitary),
            ("PITUITARY", Class::Pituitary),
        ];
        for (name, class) in cases {
            assert_eq!(Class::from_folder_name(name), Some(class), "{name}");
        }
        for name in ["masks", "tumor", "no", "other", "gliomas", ""] {
            assert_eq!(Class::from_folder_name(name), None, "{name}");
        }
    }

    #[test]
    fn order_matches_sorted_kaggle_and_sartaj_folder_names() {
        let mut kaggle = ["pituitary", "notumor", "glioma", "meningioma"];
        kaggle.sort();
        let mut sartaj = [
            "pituitary_tumor",
            "no_tumor",
            "glioma_tumor",
            "meningioma_tumor",
        ];
        sartaj.sort();
        for (i, (k, s)) in kaggle.iter().zip(sartaj.iter()).enumerate() {
            assert_eq!(Class::from_folder_name(k).map(Class::index), Some(i));
            assert_eq!(Class::from_folder_name(s).map(Class::index), Some(i));
        }
    }
}
