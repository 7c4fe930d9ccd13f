//! The example's corpus (segstore's own docs, split into paragraphs), its link graph, and
//! the deterministic embeddings of its paragraphs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use segstore::{Error, Result};
use serde::{Deserialize, Serialize};

/// Bits of an embedding.
pub const DIMS: usize = 256;

/// One paragraph of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub file: String,
    pub heading: String,
}

/// An embedding: the signs of a hashed bag-of-words vector ([`DIMS`] bits), compared by
/// Hamming distance (sign random projections approximate cosine distance). Compact, and
/// cheap to compare even in an unoptimised build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Embedding([u64; DIMS / 64]);

impl instant_distance::Point for Embedding {
    fn distance(&self, other: &Self) -> f32 {
        let [a0, a1, a2, a3] = self.0;
        let [b0, b1, b2, b3] = other.0;
        ((a0 ^ b0).count_ones()
            + (a1 ^ b1).count_ones()
            + (a2 ^ b2).count_ones()
            + (a3 ^ b3).count_ones()) as f32
    }
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
}

/// Signed feature hashing of the words with log-scaled counts, then the sign of each of
/// [`DIMS`] random projections of that vector (a SimHash): similar word distributions get
/// embeddings a small Hamming distance apart. Deterministic; no ML model.
pub fn embed(text: &str) -> Embedding {
    let mut counts: HashMap<String, f32> = HashMap::new();
    for w in words(text) {
        *counts.entry(w).or_default() += 1.0;
    }
    let mut v = [0f32; DIMS];
    for (word, n) in counts {
        // Every word adds +-weight to every dimension, by the bits of its hash.
        let h = blake3::hash(word.as_bytes());
        let weight = 1.0 + n.ln();
        for (i, slot) in v.iter_mut().enumerate() {
            let bit = h.as_bytes()[i / 8] >> (i % 8) & 1;
            *slot += if bit == 1 { weight } else { -weight };
        }
    }
    let mut bits = [0u64; DIMS / 64];
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    Embedding(bits)
}

/// The corpus: (node, text) per paragraph of README.md and docs/*.md, the graph's edges,
/// and the bytes read.
pub struct Corpus {
    pub paragraphs: Vec<(Node, String)>,
    pub edges: Vec<(u32, u32)>,
    pub bytes: u64,
}

pub fn corpus(root: &Path) -> Result<Corpus> {
    let io = |p: &Path, e: std::io::Error| {
        Error::backend(format!("reading {}", p.display()), e.to_string())
    };
    let mut files = vec![PathBuf::from("README.md")];
    let docs = root.join("docs");
    let mut names: Vec<_> = std::fs::read_dir(&docs)
        .map_err(|e| io(&docs, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    files.extend(names.into_iter().map(|n| PathBuf::from("docs").join(n)));
    let (mut paragraphs, mut edges, mut bytes) = (Vec::new(), Vec::new(), 0u64);
    let mut first_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut links: Vec<(u32, String)> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(root.join(&file)).map_err(|e| io(&file, e))?;
        bytes += text.len() as u64;
        let name = file.to_string_lossy().into_owned();
        let mut heading = String::new();
        let mut previous: Option<(u32, String)> = None;
        let mut in_code = false;
        for block in text.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
            let was_code = in_code;
            in_code ^= block.matches("```").count() % 2 == 1;
            if was_code || block.starts_with("```") {
                continue;
            }
            if let Some(h) = block.lines().find(|l| l.starts_with('#')) {
                heading = h.trim_start_matches('#').trim().to_owned();
            }
            if block.len() < 60 {
                continue;
            }
            let id = paragraphs.len() as u32;
            first_of.entry(name.clone()).or_insert(id);
            if let Some((prev, prev_heading)) = &previous {
                if *prev_heading == heading {
                    edges.push((*prev, id));
                }
            }
            for target in block
                .split("](")
                .skip(1)
                .filter_map(|s| s.split(')').next())
            {
                links.push((id, target.trim_start_matches("../").to_owned()));
            }
            previous = Some((id, heading.clone()));
            let node = Node {
                file: name.clone(),
                heading: heading.clone(),
            };
            paragraphs.push((node, block.to_owned()));
        }
    }
    for (from, target) in links {
        let target = target.split('#').next().unwrap_or_default();
        let found = first_of
            .iter()
            .find(|(f, _)| f.ends_with(target) && !target.is_empty());
        if let Some((_, &to)) = found {
            edges.push((from, to));
        }
    }
    Ok(Corpus {
        paragraphs,
        edges,
        bytes,
    })
}
