//! Crisis guard: suicide, self-harm and harm-to-others risk screening
