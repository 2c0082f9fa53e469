//! A parsed schema flattened into a list of operations, each naming the one that follows it.
//! The subset has no recursion and objects have a fixed key order, so a position in the
//! output is one operation index plus the item count of each open array: no stack is needed
//! and the recogniser state stays a small `Copy` value.

use super::any_json::MAX_ANY_DEPTH;
use super::lexers::IntLexer;
use super::schema::{SchemaError, SchemaNode};

/// Index of an operation.
pub type Pc = u32;
/// The operation reached once the value is complete.
pub const DONE: Pc = 0;
/// Most arrays one schema may contain (each keeps its item count in the state).
pub const MAX_ARRAYS: usize = 8;

/// One step of the output.
#[derive(Debug, Clone)]
pub enum Op {
    Done,
    /// Exact bytes (object punctuation and keys); `space_after[i]` marks the structural `:`
    /// and `,` after which one space may follow.
    Lit {
        bytes: Box<[u8]>,
        space_after: Box<[bool]>,
        next: Pc,
    },
    Str {
        max_len: Option<u32>,
        next: Pc,
    },
    Int {
        min: i64,
        max: i64,
        next: Pc,
    },
    Num {
        next: Pc,
    },
    /// One of fixed JSON texts (enum values, booleans).
    Choice {
        alts: Box<[Box<[u8]>]>,
        next: Pc,
    },
    /// `[`, then `]` or the first item.
    ArrayOpen(ArrayOp),
    /// After an item: `,` and another item, or `]`.
    ArrayNext(ArrayOp),
    AnyObject {
        next: Pc,
    },
}

/// What both array operations know about their array.
#[derive(Debug, Clone, Copy)]
pub struct ArrayOp {
    pub slot: u8,
    pub min: u32,
    pub max: u32,
    /// Fewest bytes of one item.
    pub item_min: u32,
    pub item: Pc,
    pub next: Pc,
}

impl ArrayOp {
    /// Fewest bytes that close the array after `count` items.
    pub fn min_to_close(&self, count: u32) -> u32 {
        let missing = self.min.saturating_sub(count);
        missing
            .saturating_mul(self.item_min.saturating_add(1))
            .saturating_add(1)
    }
}

/// The compiled schema.
#[derive(Debug, Clone)]
pub struct Program {
    pub ops: Vec<Op>,
    /// Fewest bytes of each operation on its own, from its start (ignored for `ArrayNext`,
    /// whose cost depends on the item count).
    pub own_min: Vec<u32>,
    pub start: Pc,
    /// An upper bound of the fewest bytes that complete the value, over every reachable state:
    /// a token budget at least this large can never be too small.
    pub worst_min_to_end: u32,
}

impl Program {
    pub fn compile(root: &SchemaNode) -> Result<Program, SchemaError> {
        let mut p = Program {
            ops: vec![Op::Done],
            own_min: vec![0],
            start: DONE,
            worst_min_to_end: 0,
        };
        let mut slots = 0u8;
        p.start = p.value(root, DONE, "#", &mut slots)?;
        p.worst_min_to_end = worst(root).min(u32::MAX as u64) as u32;
        Ok(p)
    }

    fn push(&mut self, op: Op) -> Pc {
        let own = match &op {
            Op::Done | Op::ArrayNext(_) => 0,
            Op::Lit { bytes, .. } => bytes.len() as u32,
            Op::Str { .. } => 2,
            Op::Int { min, max, .. } => IntLexer::default().min_to_end(*min, *max),
            Op::Num { .. } => 1,
            Op::Choice { alts, .. } => alts.iter().map(|a| a.len() as u32).min().unwrap_or(0),
            Op::ArrayOpen(a) => 2 + a.min * a.item_min + a.min.saturating_sub(1),
            Op::AnyObject { .. } => 2,
        };
        self.ops.push(op);
        self.own_min.push(own);
        (self.ops.len() - 1) as Pc
    }

    /// Appends the operations of `node`, followed by `next`; returns the first one.
    fn value(
        &mut self,
        node: &SchemaNode,
        next: Pc,
        path: &str,
        slots: &mut u8,
    ) -> Result<Pc, SchemaError> {
        Ok(match node {
            SchemaNode::Object { properties } => {
                if properties.is_empty() {
                    return Ok(self.lit(b"{}", next));
                }
                let mut cur = self.lit(b"}", next);
                for (i, (name, sub)) in properties.iter().enumerate().rev() {
                    let sub_path = format!("{path}/properties/{name}");
                    cur = self.value(sub, cur, &sub_path, slots)?;
                    let key = serde_json::Value::String(name.clone()).to_string();
                    let prefix = if i == 0 {
                        format!("{{{key}:")
                    } else {
                        format!(",{key}:")
                    };
                    cur = self.lit(prefix.as_bytes(), cur);
                }
                cur
            }
            SchemaNode::AnyObject => self.push(Op::AnyObject { next }),
            SchemaNode::Array {
                items,
                min_items,
                max_items,
            } => {
                if *slots as usize == MAX_ARRAYS {
                    return Err(SchemaError {
                        path: path.to_string(),
                        msg: format!("a schema may hold at most {MAX_ARRAYS} arrays"),
                    });
                }
                let slot = *slots;
                *slots += 1;
                let placeholder = ArrayOp {
                    slot,
                    min: *min_items,
                    max: max_items.unwrap_or(u32::MAX),
                    item_min: min_len(items).min(u32::MAX as u64) as u32,
                    item: DONE,
                    next,
                };
                let after_item = self.push(Op::ArrayNext(placeholder));
                let item = self.value(items, after_item, &format!("{path}/items"), slots)?;
                let filled = ArrayOp {
                    item,
                    ..placeholder
                };
                self.ops[after_item as usize] = Op::ArrayNext(filled);
                self.push(Op::ArrayOpen(filled))
            }
            SchemaNode::String { max_length } => self.push(Op::Str {
                max_len: *max_length,
                next,
            }),
            SchemaNode::Integer { minimum, maximum } => self.push(Op::Int {
                min: minimum.unwrap_or(i64::MIN),
                max: maximum.unwrap_or(i64::MAX),
                next,
            }),
            SchemaNode::Number => self.push(Op::Num { next }),
            SchemaNode::Boolean => self.choice(["true".to_string(), "false".to_string()], next),
            SchemaNode::Enum(values) => self.choice(values.iter().map(|v| v.json_text()), next),
        })
    }

    fn lit(&mut self, bytes: &[u8], next: Pc) -> Pc {
        // Keys are JSON-escaped, so a `:` or `,` inside one is never structural: the structural
        // ones are the first byte (`,`) and the last (`:`).
        let n = bytes.len();
        let space_after = (0..n)
            .map(|i| (i == 0 && bytes[i] == b',') || (i == n - 1 && bytes[i] == b':'))
            .collect();
        self.push(Op::Lit {
            bytes: bytes.into(),
            space_after,
            next,
        })
    }

    fn choice(&mut self, texts: impl IntoIterator<Item = String>, next: Pc) -> Pc {
        let alts = texts
            .into_iter()
            .map(|t| t.into_bytes().into_boxed_slice())
            .collect();
        self.push(Op::Choice { alts, next })
    }
}

/// Fewest bytes of a value of `node`.
fn min_len(node: &SchemaNode) -> u64 {
    match node {
        SchemaNode::Object { properties } => {
            let keys: u64 = properties.iter().map(|(k, _)| key_len(k) + 2).sum();
            let values: u64 = properties.iter().map(|(_, v)| min_len(v)).sum();
            2 + keys + values + properties.len().saturating_sub(1) as u64
        }
        SchemaNode::AnyObject => 2,
        SchemaNode::Array {
            items, min_items, ..
        } => {
            let n = *min_items as u64;
            2 + n * min_len(items) + n.saturating_sub(1)
        }
        SchemaNode::String { .. } => 2,
        SchemaNode::Integer { minimum, maximum } => IntLexer::default()
            .min_to_end(minimum.unwrap_or(i64::MIN), maximum.unwrap_or(i64::MAX))
            as u64,
        SchemaNode::Number => 1,
        SchemaNode::Boolean => 4,
        SchemaNode::Enum(v) => v
            .iter()
            .map(|e| e.json_text().len() as u64)
            .min()
            .unwrap_or(0),
    }
}

/// Bytes of a key as written (quotes excluded).
fn key_len(name: &str) -> u64 {
    serde_json::Value::String(name.to_string())
        .to_string()
        .len() as u64
        - 2
}

/// An upper bound of the fewest bytes to complete the value from any state inside it: every
/// part costs at most its own worst case (a string mid-escape, an integer's longest prefix,
/// an array short of its minimum by every item, or at least one item open).
fn worst(node: &SchemaNode) -> u64 {
    match node {
        SchemaNode::Object { properties } => {
            let keys: u64 = properties.iter().map(|(k, _)| key_len(k) + 4).sum();
            2 + keys + properties.iter().map(|(_, v)| worst(v)).sum::<u64>()
        }
        SchemaNode::AnyObject => 2 * MAX_ANY_DEPTH as u64 + 8,
        SchemaNode::Array {
            items, min_items, ..
        } => 2 + (*min_items).max(1) as u64 * (worst(items) + 1),
        SchemaNode::String { .. } => 8,
        SchemaNode::Integer { .. } => 21,
        SchemaNode::Number => 2,
        SchemaNode::Boolean => 5,
        SchemaNode::Enum(v) => v
            .iter()
            .map(|e| e.json_text().len() as u64)
            .max()
            .unwrap_or(0),
    }
}
