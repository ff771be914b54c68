//! The documentation cannot drift from the command line: every `tumornet …` line in a code block of the README
//! and of the guides in `docs/` parses with the real argument parser, and the README's two fresh-machine commands
//! are the ones CI and the demo test run.

use clap::Parser;
use std::path::{Path, PathBuf};
use tumornet::cli::Cli;

/// The Markdown files users read. `docs/experiments/` is left out: its logs record commands as they were run
/// then (its header maps the old flags to today's settings).
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut stack = vec![root.join("docs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/").flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("experiments") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Lines of fenced code blocks, with `\` continuations joined.
fn code_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if !inside {
            continue;
        }
        let line = line.trim();
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        lines.push(std::mem::take(&mut pending));
    }
    lines
}

/// Shell words of a command line up to a comment, pipe or redirection (quotes kept together, then removed).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, '#' | '|' | '>' | '<' | ';' | '&') if word.is_empty() && !started => break,
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn every_documented_tumornet_command_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("read");
        for line in code_lines(&text) {
            let line = line.strip_prefix("$ ").unwrap_or(&line);
            let argv = words(line);
            if argv.first().map(String::as_str) != Some("tumornet") {
                continue;
            }
            checked += 1;
            if let Err(e) = Cli::try_parse_from(&argv) {
                failures.push(format!("{}: `{line}`: {}", file.display(), e.kind()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked >= 10, "only {checked} documented commands found");
}

#[test]
fn the_fresh_machine_commands_are_what_ci_and_the_demo_test_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let lines = code_lines(&readme);
    let has = |command: &str| lines.iter().any(|l| words(l).join(" ") == command);
    assert!(has("cargo run --release -- demo"), "README: demo command");
    assert!(has("cargo test"), "README: test command");
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim_start().starts_with("cargo test")),
        ".ci/run must run the README's test command"
    );
    // The demo test runs the same subcommand (in its quick form) through the same parser.
    assert!(Cli::try_parse_from(["tumornet", "demo"]).is_ok());
}

#[test]
fn words_split_like_a_shell() {
    assert_eq!(
        words("tumornet pseudo-masks run data --set 'cam.scales=[1, 0.5]' # comment"),
        [
            "tumornet",
            "pseudo-masks",
            "run",
            "data",
            "--set",
            "cam.scales=[1, 0.5]"
        ]
    );
    assert_eq!(
        words("tumornet config recipe best > mine.toml"),
        ["tumornet", "config", "recipe", "best"]
    );
}
