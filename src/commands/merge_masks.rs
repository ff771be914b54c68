//! `tumornet merge-masks PART… --out DIR`: pseudo-mask folders made in shards become one (see
//! `crate::pseudo::merge`).

use crate::cli::MergeMasksArgs;
use crate::data::scan::Split;
use crate::pseudo::merge::merge;
use crate::pseudo::MANIFEST;

pub fn run(args: &MergeMasksArgs) -> anyhow::Result<()> {
    let manifest = merge(&args.parts, &args.out)?;
    print!("{}", manifest.summary());
    let count = |split: Split| manifest.entries.iter().filter(|e| e.split == split).count();
    println!(
        "Merged {} pseudo-masks ({} Training, {} Testing) from {} folders into {} ({MANIFEST}, quality.md; the \
         masks stay where they are)",
        manifest.entries.len(),
        count(Split::Training),
        count(Split::Testing),
        args.parts.len(),
        args.out.display()
    );
    for error in &manifest.errors {
        eprintln!("error: {error}");
    }
    Ok(())
}
