//! The CLI reference (`docs/cli.md`), rendered from the clap definitions:
//! every command's long help, so the page cannot drift from the binary (a
//! test compares them; `HONE_BLESS=1 cargo test -p hone reference` rewrites
//! it).

use std::fmt::Write;

/// The whole page: a contents list, then each command and subcommand.
pub fn markdown(root: &mut clap::Command) -> String {
    root.build();
    let mut out = String::from(
        "# CLI reference\n\nGenerated from `hone`'s flag definitions by `HONE_BLESS=1 cargo test -p hone reference`; a test fails when this page and the binary differ. Task guides: [docs/README.md](README.md).\n\n",
    );
    let mut all = Vec::new();
    walk(root, "", &mut all);
    for (path, _) in &all {
        let anchor = path.replace(' ', "-");
        let depth = path.matches(' ').count().saturating_sub(1);
        let _ = writeln!(out, "{}- [`{path}`](#{anchor})", "  ".repeat(depth));
    }
    for (path, help) in &all {
        let _ = write!(out, "\n## {path}\n\n```text\n{}\n```\n", help.trim_end());
    }
    out
}

/// Depth first, skipping the root's own page and hidden commands.
fn walk(cmd: &mut clap::Command, prefix: &str, out: &mut Vec<(String, String)>) {
    let path = match prefix {
        "" => cmd.get_name().to_string(),
        p => format!("{p} {}", cmd.get_name()),
    };
    if !prefix.is_empty() {
        out.push((path.clone(), cmd.render_long_help().to_string()));
    }
    for sub in cmd.get_subcommands_mut() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            walk(sub, &path, out);
        }
    }
}
