//! Writing the HTML report of a demo folder or a run folder and its companions (dataset analysis, Grad-CAM,
//! pseudo-masks, segmentation), with `report.md` beside it.

use crate::report::{document, html, Sources};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// The folder to report on, where to write, and parts given explicitly (else found under their usual names).
#[derive(Debug, Clone, Default)]
pub struct ReportRequest {
    /// A demo folder (run/, inspect/, cam/, pseudo-masks/, seg/ inside) or a run folder (companions beside it).
    pub dir: PathBuf,
    /// The HTML file (default: DIR/report.html).
    pub out: Option<PathBuf>,
    pub inspect: Option<PathBuf>,
    pub cam: Option<PathBuf>,
    pub pseudo: Option<PathBuf>,
    pub seg: Option<PathBuf>,
}

/// Where each part is: given, or found under its usual name (inside a demo folder, or beside a run folder).
pub fn sources(args: &ReportRequest) -> Sources {
    let is_run = args.dir.join(crate::model::run::CONFIG_FILE).is_file();
    let (run, base) = if is_run {
        (
            args.dir.clone(),
            args.dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        )
    } else {
        (args.dir.join("run"), args.dir.clone())
    };
    let find = |given: &Option<PathBuf>, name: &str| -> Option<PathBuf> {
        given.clone().or_else(|| {
            let dir = base.join(name);
            dir.is_dir().then_some(dir)
        })
    };
    let seg = find(&args.seg, "seg");
    let pseudo = args.pseudo.clone().or_else(|| {
        find(&None, "pseudo-masks").or_else(|| {
            seg.as_ref()
                .map(|s| s.join("pseudo-masks"))
                .filter(|p| p.is_dir())
        })
    });
    Sources {
        run,
        inspect: find(&args.inspect, "inspect"),
        cam: find(&args.cam, "cam"),
        pseudo,
        seg,
        summary: (!is_run)
            .then(|| args.dir.join("summary.md"))
            .filter(|p| p.is_file()),
    }
}

/// Write the report; returns the HTML file's path.
pub fn report(args: &ReportRequest) -> anyhow::Result<PathBuf> {
    let sources = sources(args);
    let doc = document(&sources)?;
    let page = html(&doc)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("report.html"));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&out, page).with_context(|| format!("writing {}", out.display()))?;
    let md = out.with_extension("md");
    std::fs::write(&md, &doc.markdown).with_context(|| format!("writing {}", md.display()))?;
    Ok(out)
}
