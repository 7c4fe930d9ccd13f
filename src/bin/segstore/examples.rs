//! The examples each subcommand's `--help` ends with: the common case first, then the
//! flags operators reach for. The tests below check that every subcommand has some and
//! that each example parses.

pub const DEMO: &str = "Examples:
  segstore demo                                     runs in ./segstore-demo, touches nothing else
";

pub const PUT: &str = "Examples:
  segstore put products/tantivy/s0/seg1.idx seg1.idx
  segstore put -r index/ products/tantivy -m \"nightly rebuild\"
  segstore put products/vector/s0/vectors.hnsw - < vectors.hnsw
  segstore put products/tantivy/s0/meta.json meta.json --meta build=4711
";

pub const GET: &str = "Examples:
  segstore get products/tantivy/s0/meta.json
  segstore get products/tantivy/s0/seg1.idx -o seg1.idx
  segstore get products/tantivy/s0/meta.json --snapshot nightly
  segstore get products/tantivy/s0/meta.json --version 41 -o -
";

pub const LS: &str = "Examples:
  segstore ls                                       the collections
  segstore ls -l products                           files with sizes and hashes
  segstore ls -l -R                                 every file of every collection
  segstore ls products/tantivy --snapshot nightly
";

pub const DU: &str = "Examples:
  segstore du                                       every collection
  segstore du products/tantivy --version 41
";

pub const MV: &str = "Examples:
  segstore mv products/tantivy/s0/a.tmp products/tantivy/s0/a.idx
  segstore mv products/tantivy/s0/a.idx products/tantivy/s0/b.idx -m \"merge\"
";

pub const RM: &str = "Examples:
  segstore rm products/tantivy/s0/old.idx
  segstore rm -r products/tantivy/s3                says what it would delete
  segstore rm -r --yes products                     a whole collection, as one commit
  segstore rm products/tantivy/s0/x.idx -m \"stale\" --meta ticket=OPS-7
";

pub const SNAPSHOT: &str = "Examples:
  segstore snapshot create products nightly
  segstore snapshot create products before-reindex --version 41 --ttl 7d
  segstore snapshot list products
  segstore snapshot restore products nightly -m \"undo the bad reindex\"
  segstore snapshot delete products before-reindex
";

pub const DIFF: &str = "Examples:
  segstore diff products 41 42
  segstore diff products nightly                    the snapshot against the latest
";

pub const GC: &str = "Examples:
  segstore gc --dry-run                             what would go, and why the rest stays
  segstore gc
  segstore gc --keep-last 10 --keep-daily 7 --keep-weekly 4
";

pub const VERIFY: &str = "Examples:
  segstore verify
  segstore verify --sample 0.1                      a tenth of the blobs, chosen at random
  segstore verify --repair                          remove corrupt blobs (see OPERATIONS)
";

pub const STATS: &str = "Examples:
  segstore stats
  segstore --json stats
";

pub const EXPORT: &str = "Examples:
  segstore export products products.tar.zst
  segstore export products backup-dir/ --snapshot nightly
  segstore export products - | ssh backup 'cat > products.tar'
";

pub const IMPORT: &str = "Examples:
  segstore import products products.tar.zst
  segstore import products products.tar.zst --as products-restored
  ssh backup 'cat products.tar' | segstore import products -
";

pub const SYNC: &str = "Examples:
  segstore sync --from segstore-data --to s3.toml products
  segstore sync --from s3.toml --to ./local-copy products --snapshot nightly
  segstore sync --from prod.toml --to dr.toml --mirror
";

pub const FORK: &str = "Examples:
  segstore fork products products-experiment
  segstore fork products products-v41 --version 41
";

pub const LOG: &str = "Examples:
  segstore log products
  segstore log products -n 5
  segstore --json log products --all
";

pub const DOCTOR: &str = "Examples:
  segstore doctor
  segstore --config s3.toml doctor
";

pub const COMPLETIONS: &str = "Examples:
  segstore completions bash > /etc/bash_completion.d/segstore
  segstore completions zsh > \"${fpath[1]}/_segstore\"
  segstore completions fish > ~/.config/fish/completions/segstore.fish
";

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::Cli;

    /// The words of an example's command line, up to a redirection or pipe.
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        for c in line.trim().chars() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                _ => word.push(c),
            }
        }
        words.push(word);
        let end = words
            .iter()
            .position(|w| ["<", ">", "|"].contains(&w.as_str()))
            .unwrap_or(words.len());
        words.truncate(end);
        words
    }

    #[test]
    fn every_subcommand_ends_its_help_with_examples_that_parse() {
        let cli = Cli::command();
        let mut parsed = 0;
        for sub in cli.get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.starts_with("Examples:"),
                "{} has no examples",
                sub.get_name()
            );
            let lines = help.lines().filter(|l| l.starts_with("  segstore "));
            for line in lines {
                // Comments stand after the command, two spaces or more away.
                let command = line.trim().split("   ").next().unwrap();
                let words = words(command);
                assert!(
                    words.iter().any(|w| w == sub.get_name()),
                    "example {line:?} is not of {}",
                    sub.get_name()
                );
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("example {line:?} of {}: {e}", sub.get_name());
                }
                parsed += 1;
            }
        }
        assert!(parsed >= 40, "{parsed} examples parsed");
    }
}
