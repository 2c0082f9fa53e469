//! Which tokens may come next: every token whose whole text the recogniser can consume from
//! its current state (so a token spanning several JSON elements, such as `":"` or `"},{"`, is
//! allowed when all of it fits), found by one preorder walk of the vocabulary trie.

use super::machine::JsonState;
use super::program::Program;
use super::recognizer::JsonRecognizer;
use super::token_trie::{TokenTrie, Trie};

/// Marks in `allowed` (resized to the trie's vocabulary, cleared first) the tokens that may
/// come next. With `budget = Some(n)` (tokens left after this one), a token is allowed only if
/// the value can still be completed in `n` more single-byte tokens; if that leaves nothing, only
/// tokens that shorten the shortest completion are allowed (and if none does, any token).
/// Returns how many tokens are allowed.
pub fn allowed_tokens(
    rec: &JsonRecognizer,
    trie: &TokenTrie,
    budget: Option<u32>,
    allowed: &mut Vec<bool>,
) -> usize {
    let (program, state) = rec.parts();
    // Only a budget below the worst case can ever rule a token out.
    let budget = budget.filter(|&n| n < program.worst_min_to_end);
    if let Some(n) = budget {
        let fits = mark(program, trie, state, allowed, |s| {
            s.min_to_end(program) <= n
        });
        if fits > 0 {
            return fits;
        }
        // Fewer tokens are left than the shortest completion has bytes, so the byte count
        // cannot guarantee an ending; multi-byte tokens still can. Every token must then bring
        // the value closer to complete (a string closes instead of growing), so an output
        // cut by the budget has spent its last tokens on closing.
        let now = state.min_to_end(program);
        let closer = mark(program, trie, state, allowed, |s| {
            s.min_to_end(program) < now
        });
        if closer > 0 {
            return closer;
        }
    }
    mark(program, trie, state, allowed, |_| true)
}

/// Marks the tokens that `state` can consume and whose end state passes `accept`.
fn mark(
    program: &Program,
    trie: &TokenTrie,
    state: &JsonState,
    allowed: &mut Vec<bool>,
    accept: impl Fn(&JsonState) -> bool,
) -> usize {
    allowed.clear();
    allowed.resize(trie.vocab_len(), false);
    let Some(room) = state.plain_string_room(program) else {
        return walk(program, &trie.all, state, allowed, accept);
    };
    // Inside a string, plain text leaves the state as it was but for the character count,
    // so the end state of any that fits is accepted exactly when the current one is.
    let mut count = 0;
    if accept(state) {
        for &(chars, id) in &trie.plain {
            if chars > room {
                break;
            }
            allowed[id as usize] = true;
            count += 1;
        }
    }
    count + walk(program, &trie.other, state, allowed, accept)
}

/// Marks the tokens of `trie` whose bytes `start` consumes and whose end state passes
/// `accept`, in one preorder pass that skips the subtree of every rejected byte.
fn walk(
    program: &Program,
    trie: &Trie,
    start: &JsonState,
    allowed: &mut [bool],
    accept: impl Fn(&JsonState) -> bool,
) -> usize {
    let mut count = 0;
    // states[d]: the state after the first d bytes of the current trie path.
    let mut states = vec![*start; trie.max_depth + 1];
    let nodes = &trie.nodes;
    let mut i = 0;
    while i < nodes.len() {
        let n = nodes[i];
        let d = n.depth as usize;
        let mut s = states[d - 1];
        if !s.advance(program, n.byte) {
            i = n.end as usize;
            continue;
        }
        if n.ids_start != n.ids_end && accept(&s) {
            for &id in &trie.ids[n.ids_start as usize..n.ids_end as usize] {
                allowed[id as usize] = true;
                count += 1;
            }
        }
        states[d] = s;
        i += 1;
    }
    count
}
