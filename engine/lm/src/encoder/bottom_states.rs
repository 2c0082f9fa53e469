//! Hidden states after the blocks an encoder shares with its adapted copies. The risk screen's
//! encoder is all-MiniLM-L6-v2 with an adapter on its upper blocks only, and a planner's new
//! turn sends the message and its sentences through both encoders: the lower blocks' output of
//! a text is the same for both, so whichever encoder reads the text first keeps it here and the
//! other starts from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Texts whose states are kept before the store starts over: a turn's pieces, with room for a
/// few turns (a 78-token text's state is ~120 KB).
const STATES_LIMIT: usize = 64;

/// The states after the first `depth` blocks, by text.
pub struct BottomStates {
    depth: usize,
    states: Mutex<HashMap<String, Arc<[f32]>>>,
}

impl BottomStates {
    pub fn new(depth: usize) -> Self {
        BottomStates {
            depth,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Blocks whose output is kept (those every sharing encoder has unchanged).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The kept state of `text`, `[tokens, hidden]` row-major.
    pub fn get(&self, text: &str) -> Option<Arc<[f32]>> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.get(text).cloned()
    }

    /// Keeps the state of `text`.
    pub fn put(&self, text: &str, state: &[f32]) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if states.len() >= STATES_LIMIT && !states.contains_key(text) {
            states.clear();
        }
        states.insert(text.to_string(), Arc::from(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_states_by_text_and_starts_over_when_full() {
        let store = BottomStates::new(3);
        assert_eq!(store.depth(), 3);
        store.put("a", &[1.0, 2.0]);
        assert_eq!(store.get("a").as_deref(), Some(&[1.0, 2.0][..]));
        assert!(store.get("b").is_none());
        for i in 1..STATES_LIMIT {
            store.put(&i.to_string(), &[i as f32]);
        }
        assert!(store.get("a").is_some());
        store.put("one more", &[0.0]);
        assert!(store.get("a").is_none(), "a full store starts over");
        assert!(store.get("one more").is_some());
    }
}
