//! One function per subcommand.

use segstore::{LocalStorage, Result, StoragePath};
use serde_json::json;

use crate::failure::Failure;
use crate::open::{require_collection, Access, Opened};
use crate::output::report;
use crate::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        let generator = match shell {
            crate::Shell::Bash => clap_complete::Shell::Bash,
            crate::Shell::Zsh => clap_complete::Shell::Zsh,
            crate::Shell::Fish => clap_complete::Shell::Fish,
        };
        let mut cmd = crate::Cli::command();
        clap_complete::generate(generator, &mut cmd, "segstore", &mut std::io::stdout());
        return Ok(());
    }
    if matches!(cli.command, Command::Demo) {
        return demo(&cli).await;
    }
    // Opens its own two stores.
    if let Command::Sync(args) = cli.command {
        return Ok(crate::replicate::sync(args, cli.json).await?);
    }
    let config = crate::open::resolve(&cli)?;
    if matches!(cli.command, Command::Doctor) {
        return crate::doctor::run(&config, cli.json).await;
    }
    let access = match cli.command {
        Command::Put { .. } | Command::Import { .. } => Access::Create,
        _ => Access::Existing,
    };
    let Opened { store, gc_defaults } =
        crate::open::open(&config, access, cli.lock_timeout).await?;
    match cli.command {
        // Runs in its own store, before any store is opened (see `demo`).
        Command::Demo | Command::Sync(_) | Command::Completions { .. } | Command::Doctor => Ok(()),
        Command::Fork(args) => Ok(crate::replicate::fork(&store, args, cli.json).await?),
        Command::Snapshot { action } => {
            match &action {
                crate::SnapshotAction::List { collection } => {
                    require_collection(&store, collection).await?
                }
                crate::SnapshotAction::Restore { collection, .. } => {
                    crate::interrupt::watch(&store, collection).await?
                }
                _ => {}
            }
            Ok(crate::lifecycle::snapshot(&store, action, cli.json).await?)
        }
        Command::Diff {
            collection,
            from,
            to,
        } => {
            require_collection(&store, &collection).await?;
            Ok(crate::lifecycle::diff(&store, &collection, &from, to.as_deref(), cli.json).await?)
        }
        Command::Gc {
            dry_run,
            grace,
            keep_last,
            keep_within,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
        } => {
            let mut options = gc_defaults;
            options.dry_run = dry_run;
            if let Some(grace) = grace {
                options.grace = grace;
            }
            if let Some(n) = keep_last {
                options.retention.keep_last = Some(n);
            }
            if let Some(t) = keep_within {
                options.retention.keep_within = Some(t);
            }
            let r = &mut options.retention;
            for (flag, field) in [
                (keep_hourly, &mut r.keep_hourly),
                (keep_daily, &mut r.keep_daily),
                (keep_weekly, &mut r.keep_weekly),
                (keep_monthly, &mut r.keep_monthly),
                (keep_yearly, &mut r.keep_yearly),
            ] {
                if flag.is_some() {
                    *field = flag;
                }
            }
            Ok(crate::lifecycle::gc(&store, &options, cli.json).await?)
        }
        Command::Verify { sample, repair } => {
            Ok(crate::lifecycle::verify(&store, sample, repair, cli.json).await?)
        }
        Command::Stats => Ok(crate::lifecycle::stats(&store, cli.json).await?),
        Command::Export {
            collection,
            dest,
            snapshot,
        } => {
            require_collection(&store, &collection).await?;
            Ok(crate::lifecycle::export(&store, &collection, &dest, snapshot, cli.json).await?)
        }
        Command::Import {
            collection,
            source,
            rename: Some(name),
        } => {
            crate::interrupt::watch(&store, &name).await?;
            Ok(crate::replicate::import_as(&store, &collection, &source, &name, cli.json).await?)
        }
        Command::Import {
            collection, source, ..
        } => {
            crate::interrupt::watch(&store, &collection).await?;
            Ok(crate::lifecycle::import(&store, &collection, &source, cli.json).await?)
        }
        Command::Put {
            path,
            file,
            recursive: true,
            note,
        } => {
            let note = note.into_note();
            let Some(prefix) = file else {
                return Err(Failure::Usage(
                    "put -r needs a directory and a prefix: `segstore put -r DIR collection/backend`"
                        .into(),
                ));
            };
            let prefix = prefix.to_string_lossy().into_owned();
            let dir = std::path::Path::new(&path);
            crate::upload::put_dir(&store, dir, &prefix, note, cli.json).await
        }
        Command::Put {
            path, file, note, ..
        } => {
            let note = note.into_note();
            let path: StoragePath = path.parse()?;
            crate::interrupt::watch(&store, &path.collection).await?;
            let info = match file.filter(|f| f.as_os_str() != "-") {
                Some(f) => {
                    let opening = || format!("opening input file {}", f.display());
                    let file = tokio::fs::File::open(&f)
                        .await
                        .map_err(|e| Failure::local(opening(), e))?;
                    let meta = file
                        .metadata()
                        .await
                        .map_err(|e| Failure::local(opening(), e))?;
                    if meta.is_dir() {
                        return Err(Failure::local(
                            opening(),
                            std::io::Error::other("it is a directory"),
                        ));
                    }
                    let len = meta.len();
                    let bar = crate::output::bytes_bar(cli.json, len, "storing");
                    let info =
                        crate::upload::write(&store, &path, bar.wrap_async_read(file), note).await;
                    bar.finish_and_clear();
                    info?
                }
                None => {
                    let spinner = crate::output::progress(cli.json, "storing stdin");
                    let info = crate::upload::write(&store, &path, tokio::io::stdin(), note).await;
                    spinner.finish_and_clear();
                    info?
                }
            };
            let meta = store.metadata(&path).await?;
            report(
                cli.json,
                json!({"path": path.to_string(), "version": info.version, "size": meta.size, "blake3": meta.id.to_hex()}),
                &format!(
                    "stored {path} ({} bytes, blake3 {}) at version {}",
                    meta.size, meta.id, info.version
                ),
            );
            Ok(())
        }
        Command::Get { path, output, at } => {
            crate::fetch::get(&store, &path, output, &at, cli.json).await
        }
        Command::Ls {
            prefix,
            long,
            recursive,
            at,
        } => crate::read::ls(&store, prefix.as_deref(), long, recursive, &at, cli.json).await,
        Command::Du { prefix, at } => {
            crate::read::du(&store, prefix.as_deref(), &at, cli.json).await
        }
        Command::Mv { from, to, note } => {
            let (from, to): (StoragePath, StoragePath) = (from.parse()?, to.parse()?);
            crate::interrupt::watch(&store, &from.collection).await?;
            let rename = segstore::Op::Rename {
                from: from.clone(),
                to: to.clone(),
            };
            let info = crate::upload::commit_one(&store, rename, note.into_note()).await?;
            report(
                cli.json,
                json!({"version": info.version}),
                &format!("renamed {from} -> {to} at version {}", info.version),
            );
            Ok(())
        }
        Command::Rm {
            path,
            recursive: true,
            yes,
            note,
        } => crate::upload::rm_prefix(&store, &path, yes, note.into_note(), cli.json).await,
        Command::Rm { path, note, .. } => {
            let path: StoragePath = path.parse()?;
            crate::interrupt::watch(&store, &path.collection).await?;
            let delete = segstore::Op::Delete { path: path.clone() };
            let info = crate::upload::commit_one(&store, delete, note.into_note()).await?;
            report(
                cli.json,
                json!({"version": info.version, "changed": info.created}),
                &if info.created {
                    format!("deleted {path} at version {}", info.version)
                } else {
                    format!("{path} did not exist; nothing changed")
                },
            );
            Ok(())
        }
        Command::Log {
            collection,
            limit,
            all,
        } => crate::read::log(&store, &collection, (!all).then_some(limit), cli.json).await,
    }
}

/// Where the demo keeps its own store, relative to the working directory.
const DEMO_DIR: &str = "segstore-demo";

/// The demo runs in a store of its own, so that its GC and retention touch nothing else;
/// nobody else uses that store, so its GC may start deleting after a second.
async fn demo(cli: &Cli) -> Result<(), Failure> {
    if cli.config.is_some() || cli.data_dir.is_some() {
        return Err(Failure::Usage(format!(
            "the demo runs in a store of its own, ./{DEMO_DIR}, and touches no other: it \
             takes no --config or --data-dir"
        )));
    }
    let options = segstore::StoreOptions {
        gc_delete_delay: std::time::Duration::from_secs(1),
        clock_margin: std::time::Duration::from_millis(200),
        ..segstore::StoreOptions::default()
    };
    let local = LocalStorage::open_with(DEMO_DIR, options).await?;
    let location = format!(
        "its own store {} (it touches no other store)",
        local.root().display()
    );
    Ok(crate::demo::run(local.store(), &location, cli.json).await?)
}
