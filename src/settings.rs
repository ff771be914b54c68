//! Settings as data: a typed struct read from TOML (a preset embedded in the binary, or a user's file) and
//! changed key by key (`--set cam.layer=layer3`), resolved once before a command runs. Unknown keys are errors
//! that name the key and the valid ones (serde's `deny_unknown_fields` lists them).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why settings could not be resolved. `main` reports these as a bad command line (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{name}: unknown {what}; the presets are: {presets}")]
    UnknownPreset {
        what: &'static str,
        name: String,
        presets: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("--set {text}: expected KEY=VALUE, e.g. {example}")]
    SetSyntax { text: String, example: &'static str },
    #[error("--set {text}: {message}")]
    Set { text: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A named preset: its name, what it is, and its TOML text (embedded from `assets/`).
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub toml: &'static str,
}

/// Parse TOML text into `T`; `origin` names where the text came from in errors.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, SettingsError> {
    toml::from_str(text).map_err(|e| SettingsError::Parse {
        origin: origin.to_string(),
        message: e.message().to_string() + &location(text, e.span()),
    })
}

/// " (line N)" for an error's span, if it has one.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let line = text[..s.start.min(text.len())].lines().count().max(1);
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

/// A preset by name, or a TOML file by path (a name with a `.toml` ending or a path separator is a file).
/// Returns the settings and where they came from (`preset NAME` or the file's path).
pub fn load<T: DeserializeOwned>(
    name_or_file: &str,
    presets: &[Preset],
    what: &'static str,
) -> Result<(T, String), SettingsError> {
    if let Some(preset) = presets.iter().find(|p| p.name == name_or_file) {
        let origin = format!("{what} preset `{}`", preset.name);
        return Ok((parse(preset.toml, &origin)?, origin));
    }
    let path = Path::new(name_or_file);
    let looks_like_file = name_or_file.ends_with(".toml") || path.components().count() > 1;
    if !looks_like_file {
        return Err(SettingsError::UnknownPreset {
            what,
            name: name_or_file.to_string(),
            presets: presets
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    Ok((parse(&text, &origin)?, origin))
}

/// `value` with each `KEY=VALUE` of `sets` applied in order. KEY is dotted (`class.pituitary.cam_power`);
/// VALUE is a TOML value (`0.5`, `true`, `[2, 3]`, `"otsu"`), or else taken as a string (`otsu`,
/// `appearance:10`). Tables along the key are made when missing.
pub fn apply_sets<T: Serialize + DeserializeOwned>(
    value: &T,
    sets: &[String],
    example: &'static str,
) -> Result<T, SettingsError> {
    let mut current = to_table(value)?;
    for text in sets {
        let (key, raw) = text
            .split_once('=')
            .ok_or_else(|| SettingsError::SetSyntax {
                text: text.clone(),
                example,
            })?;
        let path: Vec<&str> = key.trim().split('.').map(str::trim).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(SettingsError::SetSyntax {
                text: text.clone(),
                example,
            });
        }
        let parsed = parse_value(raw.trim());
        let as_text = (!parsed.is_str()).then(|| toml::Value::String(raw.trim().to_string()));
        let mut tried = current.clone();
        set_path(&mut tried, &path, parsed);
        // Checked after each key, so the error names the key that broke it. A value that parsed as another TOML
        // type (`true`, `1`) is tried as text too, for names such as `supervision=true`.
        match check::<T>(&tried) {
            Ok(()) => current = tried,
            Err(message) => {
                let mut again = current.clone();
                match as_text {
                    Some(text_value) => {
                        set_path(&mut again, &path, text_value);
                        check::<T>(&again).map_err(|_| SettingsError::Set {
                            text: text.clone(),
                            message: message.clone(),
                        })?;
                        current = again;
                    }
                    None => {
                        return Err(SettingsError::Set {
                            text: text.clone(),
                            message,
                        })
                    }
                }
            }
        }
    }
    toml::Value::Table(current)
        .try_into::<T>()
        .map_err(|e| SettingsError::Invalid {
            origin: "--set".into(),
            message: e.message().to_string(),
        })
}

fn check<T: DeserializeOwned>(table: &toml::Table) -> Result<(), String> {
    toml::Value::Table(table.clone())
        .try_into::<T>()
        .map(|_| ())
        .map_err(|e| e.message().to_string())
}

/// A value as TOML, or a bare string when it is not one.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

/// A TOML file of `T` (or `T::default()` without one), with `sets` applied and `validate` passed; a rule it
/// breaks is reported with where the settings came from.
pub fn resolve_file<T>(
    file: Option<&Path>,
    sets: &[String],
    defaults: &str,
    example: &'static str,
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, SettingsError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let (base, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let origin = path.display().to_string();
            (parse::<T>(&text, &origin)?, origin)
        }
        None => (T::default(), defaults.to_string()),
    };
    let resolved = apply_sets(&base, sets, example)?;
    validate(&resolved).map_err(|message| SettingsError::Invalid { origin, message })?;
    Ok(resolved)
}

/// Settings as TOML text (what `--print` shows and a run folder stores).
pub fn to_toml<T: Serialize>(value: &T) -> Result<String, SettingsError> {
    toml::to_string_pretty(value).map_err(|e| SettingsError::Invalid {
        origin: "settings".into(),
        message: e.to_string(),
    })
}

/// Settings as a TOML table, for changing keys.
fn to_table<T: Serialize>(value: &T) -> Result<toml::Table, SettingsError> {
    toml::Table::try_from(value).map_err(|e| SettingsError::Invalid {
        origin: "settings".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        rate: f64,
        #[serde(default)]
        names: Vec<String>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        epochs: usize,
        mode: String,
        inner: Inner,
    }

    fn outer() -> Outer {
        Outer {
            epochs: 3,
            mode: "a".into(),
            inner: Inner {
                rate: 0.5,
                names: vec![],
            },
        }
    }

    #[test]
    fn sets_change_nested_keys_with_toml_values_or_bare_strings() {
        let sets = [
            "epochs=7".to_string(),
            "inner.rate = 1e-3".to_string(),
            "mode=appearance:10".to_string(),
            "inner.names=[\"x\", \"y\"]".to_string(),
        ];
        let changed = apply_sets(&outer(), &sets, "epochs=2").unwrap();
        assert_eq!(changed.epochs, 7);
        assert_eq!(changed.inner.rate, 1e-3);
        assert_eq!(changed.mode, "appearance:10");
        assert_eq!(changed.inner.names, vec!["x", "y"]);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_set_and_the_valid_keys() {
        let err = apply_sets(&outer(), &["inner.rte=1".to_string()], "epochs=2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--set inner.rte=1"), "{err}");
        assert!(err.contains("rte") && err.contains("rate"), "{err}");
        let err = apply_sets(&outer(), &["epochs=many".to_string()], "epochs=2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--set epochs=many"), "{err}");
        let err = apply_sets(&outer(), &["epochs".to_string()], "epochs=2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected KEY=VALUE, e.g. epochs=2"), "{err}");
    }

    #[test]
    fn unknown_presets_list_the_known_ones_and_files_load_from_disk() {
        let presets = [Preset {
            name: "only",
            about: "",
            toml: "epochs = 1\nmode = \"m\"\n[inner]\nrate = 2.0\n",
        }];
        let (loaded, origin) = load::<Outer>("only", &presets, "test").unwrap();
        assert_eq!(loaded.inner.rate, 2.0);
        assert!(origin.contains("only"));
        let err = load::<Outer>("nope", &presets, "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope") && err.contains("only"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.toml");
        std::fs::write(&file, to_toml(&outer()).unwrap()).unwrap();
        let (read, _) = load::<Outer>(file.to_str().unwrap(), &presets, "test").unwrap();
        assert_eq!(read, outer());
        std::fs::write(
            &file,
            "epochs = 1\nmode = \"m\"\nbogus = 1\n[inner]\nrate = 2.0\n",
        )
        .unwrap();
        let err = load::<Outer>(file.to_str().unwrap(), &presets, "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus") && err.contains("mine.toml"), "{err}");
    }
}
