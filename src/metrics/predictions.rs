//! Per-image predictions: which file, its true class, the predicted class and every class probability, written as
//! `predictions.csv` (one row per image, in the order scored) so that the wrong images can be found and opened.

use crate::data::Class;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One scored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub true_class: Class,
    pub predicted: Class,
    /// Probability of each class of the model, in the model's class order.
    pub probabilities: Vec<f32>,
}

impl Prediction {
    pub fn correct(&self) -> bool {
        self.true_class == self.predicted
    }

    /// The probability of the predicted class.
    pub fn confidence(&self, classes: &[Class]) -> f32 {
        classes
            .iter()
            .position(|c| *c == self.predicted)
            .and_then(|i| self.probabilities.get(i).copied())
            .unwrap_or(0.0)
    }
}

/// Why predictions could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PredictionsError {
    #[error("{}: {message}", path.display())]
    Csv { path: PathBuf, message: String },
    #[error("class index {0} is not one of the model's classes")]
    UnknownIndex(usize),
}

/// The predictions of `probabilities` (rows in the order of `paths` and `labels`, columns in `classes` order).
pub fn predictions(
    classes: &[Class],
    paths: &[PathBuf],
    labels: &[usize],
    probabilities: &[Vec<f32>],
) -> Result<Vec<Prediction>, PredictionsError> {
    let class = |i: usize| {
        classes
            .get(i)
            .copied()
            .ok_or(PredictionsError::UnknownIndex(i))
    };
    paths
        .iter()
        .zip(labels)
        .zip(probabilities)
        .map(|((path, &label), row)| {
            Ok(Prediction {
                path: path.clone(),
                true_class: class(label)?,
                predicted: class(super::argmax(row).0)?,
                probabilities: row.clone(),
            })
        })
        .collect()
}

/// Write `predictions.csv`: `path, true_class, predicted_class, correct, confidence, p_<class>…` (RFC 4180 quoting,
/// so commas and quotes in file names survive).
pub fn write_csv(
    path: &Path,
    classes: &[Class],
    rows: &[Prediction],
) -> Result<(), PredictionsError> {
    let error = |e: csv::Error| PredictionsError::Csv {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut writer = csv::Writer::from_path(path).map_err(error)?;
    let mut header = vec![
        "path".to_string(),
        "true_class".into(),
        "predicted_class".into(),
        "correct".into(),
        "confidence".into(),
    ];
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    writer.write_record(&header).map_err(error)?;
    for row in rows {
        let mut record = vec![
            crate::paths::lossy_string(&row.path),
            row.true_class.to_string(),
            row.predicted.to_string(),
            row.correct().to_string(),
            format!("{:.6}", row.confidence(classes)),
        ];
        record.extend(row.probabilities.iter().map(|p| format!("{p:.6}")));
        writer.write_record(&record).map_err(error)?;
    }
    writer.flush().map_err(|e| PredictionsError::Csv {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Read a `predictions.csv` back (the class columns from its header).
pub fn read_csv(path: &Path) -> Result<(Vec<Class>, Vec<Prediction>), PredictionsError> {
    let error = |message: String| PredictionsError::Csv {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| error(e.to_string()))?;
    let header = reader.headers().map_err(|e| error(e.to_string()))?.clone();
    let classes: Vec<Class> = header
        .iter()
        .filter_map(|name| name.strip_prefix("p_"))
        .map(str::parse)
        .collect::<Result<_, String>>()
        .map_err(error)?;
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| error(e.to_string()))?;
        let field = |i: usize| record.get(i).unwrap_or_default();
        let bad = |what: &str| error(format!("row {}: {what}", line + 2));
        let probabilities = (5..5 + classes.len())
            .map(|i| {
                field(i)
                    .parse::<f32>()
                    .map_err(|_| bad("a probability is not a number"))
            })
            .collect::<Result<_, _>>()?;
        rows.push(Prediction {
            path: PathBuf::from(field(0)),
            true_class: field(1).parse().map_err(|e: String| bad(&e))?,
            predicted: field(2).parse().map_err(|e: String| bad(&e))?,
            probabilities,
        });
    }
    Ok((classes, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_the_argmax_and_survive_a_round_trip_through_awkward_file_names() {
        let classes = Class::ALL.to_vec();
        let paths = vec![
            PathBuf::from("Testing/glioma/a,b \"quoted\".jpg"),
            PathBuf::from("Testing/notumor/plain.jpg"),
        ];
        let probabilities = vec![vec![0.1, 0.7, 0.1, 0.1], vec![0.05, 0.05, 0.8, 0.1]];
        let rows = predictions(&classes, &paths, &[0, 2], &probabilities).expect("rows");
        assert_eq!(rows[0].predicted, Class::Meningioma);
        assert!(!rows[0].correct() && rows[1].correct());
        assert_eq!(rows[1].confidence(&classes), 0.8);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("predictions.csv");
        write_csv(&file, &classes, &rows).expect("write");
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.starts_with(
            "path,true_class,predicted_class,correct,confidence,p_glioma,p_meningioma,p_notumor,p_pituitary\n"
        ));
        assert!(text.contains(
            "\"Testing/glioma/a,b \"\"quoted\"\".jpg\",glioma,meningioma,false,0.700000"
        ));
        let (read_classes, read_rows) = read_csv(&file).expect("read back");
        assert_eq!((read_classes, read_rows), (classes, rows));
        assert!(matches!(
            predictions(&Class::ALL, &paths[..1], &[7], &probabilities[..1]),
            Err(PredictionsError::UnknownIndex(7))
        ));
    }
}
