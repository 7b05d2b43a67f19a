//! The client subcommands — `upload`, `ls`, `get`, `rm` — as clap argument
//! structs and one async function each. They print results to stdout and
//! leave errors to the caller, which turns them into a non-zero exit.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use latchkey_domain::{UploadId, UploadStatus, sanitize_filename};
use serde_json::Value;

use super::ClientOpts;
use super::download::{Sink, download};
use super::http::{Broker, ListQuery};
use super::multipart::resume;
use super::upload::{Declared, guess_content_type, metadata_map, parse_metadata, upload_file};

#[derive(Clone, Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload, one after another.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Upload profile (the server's default is `photo`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Content type to declare for every file, instead of guessing it from
    /// each file's extension.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Metadata to store with the upload; repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub metadata: Vec<(String, String)>,
    /// How the bytes travel: put, post, headers, multipart, credentials, proxy.
    #[arg(long, default_value = "put")]
    pub mode: latchkey_domain::Mode,
    /// Multipart: how many parts to send at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Finish an interrupted multipart upload: sends only the parts the
    /// store does not hold yet, then commits. Takes exactly one FILE.
    #[arg(long, value_name = "ID")]
    pub resume: Option<UploadId>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct LsArgs {
    /// Only uploads in this state.
    #[arg(long)]
    pub status: Option<UploadStatus>,
    /// Only uploads of this profile.
    #[arg(long)]
    pub profile: Option<String>,
    /// Page size to ask the server for.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Follow cursors until every matching upload is listed.
    #[arg(long)]
    pub all: bool,
}

#[derive(Clone, Debug, clap::Args)]
pub struct GetArgs {
    pub id: UploadId,
    /// Where to write (`-` for stdout; a directory keeps the upload's
    /// filename). Defaults to the upload's filename in the current directory.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// A processed variant (e.g. `thumb`) instead of the original.
    #[arg(long)]
    pub variant: Option<String>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct RmArgs {
    /// Pending uploads are aborted, committed ones deleted.
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<UploadId>,
}

/// `latchkey upload`: prints each committed row.
pub async fn upload(opts: &ClientOpts, args: &UploadArgs) -> Result<()> {
    let broker = Broker::new(opts)?;
    if let Some(id) = &args.resume {
        let [path] = args.files.as_slice() else {
            bail!("--resume takes exactly one FILE");
        };
        let row = resume(&broker, &id.to_string(), path, usize::from(args.parallel))
            .await
            .map_err(|e| e.context(path.display().to_string()))?;
        print_row(opts, &row);
        return Ok(());
    }
    let metadata = metadata_map(&args.metadata)?;
    each(&args.files, "uploads", async |path: &PathBuf| {
        let declared = Declared {
            profile: args.profile.as_deref(),
            content_type: args
                .content_type
                .as_deref()
                .unwrap_or_else(|| guess_content_type(path)),
            metadata: metadata.as_ref(),
            mode: args.mode,
            parallel: usize::from(args.parallel),
        };
        let row = upload_file(&broker, path, &declared)
            .await
            .map_err(|e| e.context(path.display().to_string()))?;
        print_row(opts, &row);
        Ok(())
    })
    .await
}

/// `latchkey ls`: a table, or one JSON row per line with `--json`.
pub async fn ls(opts: &ClientOpts, args: &LsArgs) -> Result<()> {
    let broker = Broker::new(opts)?;
    let status = args.status.map(UploadStatus::as_str);
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = broker
            .list(&ListQuery {
                status,
                profile: args.profile.as_deref(),
                limit: args.limit,
                cursor: cursor.as_deref(),
            })
            .await?;
        rows.extend(page.items);
        match page.next_cursor {
            Some(next) if args.all => {
                // A server handing back the same cursor would loop forever.
                if cursor.as_deref() == Some(next.as_str()) {
                    bail!("the server repeated cursor {next:?}");
                }
                cursor = Some(next);
            }
            Some(_) => {
                // On stderr, so it never mixes into `--json` output.
                eprintln!("(more uploads: pass --all to list them all)");
                break;
            }
            None => break,
        }
    }
    if opts.json {
        for row in &rows {
            println!("{row}");
        }
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

/// `latchkey get`: prints the path written.
pub async fn get(opts: &ClientOpts, args: &GetArgs) -> Result<()> {
    let broker = Broker::new(opts)?;
    let id = args.id.to_string();
    let row = broker.get(&id).await?;
    let dest = match &args.output {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) if p.is_dir() => Some(p.join(default_name(&row, &id, args.variant.as_deref()))),
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(default_name(
            &row,
            &id,
            args.variant.as_deref(),
        ))),
    };
    if let Some(dest) = &dest
        && !args.force
        && dest.symlink_metadata().is_ok()
    {
        bail!(
            "{} already exists (use --force to overwrite)",
            dest.display()
        );
    }

    let grant = broker.download(&id, args.variant.as_deref()).await?;
    // The row's checksum describes the bytes as uploaded; variants, and a
    // processed photo's clean original (it has `width`), are derived.
    let expect = match args.variant {
        None if row.get("width").is_none() => row.get("sha256").and_then(Value::as_str),
        _ => None,
    };
    let sink = match &dest {
        Some(path) => Sink::File {
            path,
            force: args.force,
        },
        None => Sink::Stdout,
    };
    let size = download(broker.http(), &grant.url, sink, expect).await?;
    if let Some(dest) = dest {
        if opts.json {
            println!(
                "{}",
                serde_json::json!({"id": id, "path": dest, "size": size})
            );
        } else {
            println!("{}", dest.display());
        }
    }
    Ok(())
}

/// `latchkey rm`: prints each resulting row (status `aborted` or `deleted`).
pub async fn rm(opts: &ClientOpts, args: &RmArgs) -> Result<()> {
    let broker = Broker::new(opts)?;
    each(&args.ids, "removals", async |id: &UploadId| {
        let id = id.to_string();
        let row = broker.delete(&id).await.map_err(|e| e.context(id))?;
        print_row(opts, &row);
        Ok(())
    })
    .await
}

/// Runs `f` for every item in turn. One failure does not stop the rest (a
/// batch should do as much as it can), but it does fail the command; a
/// single item's error is returned as is so its message is the exit message.
async fn each<T>(items: &[T], what: &str, mut f: impl AsyncFnMut(&T) -> Result<()>) -> Result<()> {
    if let [only] = items {
        return f(only).await;
    }
    let mut failed = 0;
    for item in items {
        if let Err(err) = f(item).await {
            eprintln!("error: {err:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} {what} failed", items.len());
    }
    Ok(())
}

fn print_row(opts: &ClientOpts, row: &Value) {
    if opts.json {
        println!("{row}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(row).unwrap_or_else(|_| row.to_string())
        );
    }
}

/// The local name for a download: the upload's filename reduced to a safe
/// last component (the server's word is not trusted with paths), with the
/// variant before the extension so it does not clobber the original.
fn default_name(row: &Value, id: &str, variant: Option<&str>) -> String {
    let name = match row.get("filename").and_then(Value::as_str) {
        Some(f) => sanitize_filename(f),
        None => id.to_owned(),
    };
    let Some(variant) = variant else { return name };
    let variant = sanitize_filename(variant);
    match Path::new(&name).extension().and_then(|e| e.to_str()) {
        Some(ext) if name.len() > ext.len() + 1 => {
            format!("{}-{variant}.{ext}", &name[..name.len() - ext.len() - 1])
        }
        _ => format!("{name}-{variant}"),
    }
}

const COLUMNS: [&str; 6] = ["id", "status", "profile", "size", "created_at", "filename"];

/// Left-aligned columns two spaces apart, the size right-aligned and in
/// binary units; the last column is not padded.
fn table(rows: &[Value]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let text = |k: &str| match row.get(k) {
                Some(Value::String(s)) => s
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect(),
                Some(Value::Null) | None => "-".to_owned(),
                Some(other) => other.to_string(),
            };
            let size = match row.get("size").and_then(Value::as_u64) {
                Some(n) => indicatif::HumanBytes(n).to_string(),
                None => "-".to_owned(),
            };
            [
                text("id"),
                text("status"),
                text("profile"),
                size,
                text("created_at"),
                text("filename"),
            ]
        })
        .collect();
    let mut widths = COLUMNS.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths[i];
            let piece = match i {
                3 => format!("{cell:>w$}"),
                5 => cell.to_string(),
                _ => format!("{cell:<w$}"),
            };
            l.push_str(&piece);
            if i < 5 {
                l.push_str("  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(COLUMNS);
    for row in &cells {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_names_are_safe_and_mark_variants() {
        let row = json!({"filename": "../../etc/passwd"});
        assert_eq!(default_name(&row, "x", None), "passwd");
        let row = json!({"filename": "holiday.jpg"});
        assert_eq!(default_name(&row, "x", None), "holiday.jpg");
        assert_eq!(default_name(&row, "x", Some("thumb")), "holiday-thumb.jpg");
        let row = json!({"filename": ".bashrc"});
        assert_eq!(default_name(&row, "x", Some("thumb")), ".bashrc-thumb");
        assert_eq!(default_name(&json!({}), "0123", None), "0123");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [
            json!({"id": "a1", "status": "committed", "profile": "photo", "size": 2048,
                   "created_at": "2025-01-01T00:00:00Z", "filename": "cat.jpg"}),
            json!({"id": "b2", "status": "pending", "profile": "doc", "size": 5,
                   "created_at": "2025-01-02T00:00:00Z", "filename": null}),
        ];
        let out = table(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            "id  status     profile      size  created_at            filename"
        );
        assert_eq!(
            lines[1],
            "a1  committed  photo    2.00 KiB  2025-01-01T00:00:00Z  cat.jpg"
        );
        assert_eq!(
            lines[2],
            "b2  pending    doc           5 B  2025-01-02T00:00:00Z  -"
        );
    }

    #[test]
    fn args_parse_as_documented() {
        use clap::Parser;
        #[derive(Parser)]
        enum Cmd {
            Upload(UploadArgs),
            Ls(LsArgs),
            Get(GetArgs),
            Rm(RmArgs),
        }
        let id = "0190f3f7a2c47d6e8b9a0c1d2e3f4a5b";
        let Cmd::Upload(u) = Cmd::try_parse_from([
            "x",
            "upload",
            "a.jpg",
            "b.png",
            "--profile",
            "photo",
            "--metadata",
            "k=v=w",
            "--metadata",
            "n=1",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(u.files.len(), 2);
        assert_eq!(
            u.metadata,
            [("k".into(), "v=w".into()), ("n".into(), "1".into())]
        );
        assert!(Cmd::try_parse_from(["x", "upload"]).is_err());
        assert!(Cmd::try_parse_from(["x", "upload", "a", "--metadata", "bad"]).is_err());

        let Cmd::Ls(l) =
            Cmd::try_parse_from(["x", "ls", "--status", "committed", "--all"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(l.status, Some(UploadStatus::Committed));
        assert!(l.all);
        assert!(Cmd::try_parse_from(["x", "ls", "--status", "bogus"]).is_err());
        assert!(Cmd::try_parse_from(["x", "ls", "--limit", "0"]).is_err());

        let Cmd::Get(g) =
            Cmd::try_parse_from(["x", "get", id, "-o", "out.jpg", "--variant", "thumb"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(g.id.to_string(), id);
        assert_eq!(g.output.as_deref(), Some(Path::new("out.jpg")));
        assert!(Cmd::try_parse_from(["x", "get", "../etc"]).is_err());

        let Cmd::Rm(r) = Cmd::try_parse_from(["x", "rm", id, id]).unwrap() else {
            panic!()
        };
        assert_eq!(r.ids.len(), 2);
    }
}
