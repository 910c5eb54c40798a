//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds `migrations/` at
//! compile time but cannot tell Cargo to watch the folder itself (sqlx's documented fix).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
