//! Queries for access control (DESIGN §13): accounts, sessions and API tokens. Sits beside
//! the task queries; the web layer asks it "who is this?" before submit → … → poll runs.
//! Secrets never reach this file in clear: callers pass Argon2id hashes (passwords) and
//! SHA-256 hex digests (session ids, tokens).

use sqlx::Row;

use super::{Store, StoreResult};

/// An account as listed by `wordtally user list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// What a valid session cookie stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub account_id: i64,
    pub account_name: String,
    /// The per-session CSRF token forms and htmx requests must echo.
    pub csrf_token: String,
    pub expires_at: i64,
}

/// What a valid (unrevoked) token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub account_id: Option<i64>,
}

/// A token as listed by `wordtally token list` (never the secret: it is not stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub account: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Whether any account exists: sign-in is then required (`AUTH=password` implied).
    pub async fn any_account(&self) -> StoreResult<bool> {
        on_pool!(self, |pool| {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM account")
                .fetch_one(pool)
                .await?;
            let n: i64 = row.try_get("n")?;
            Ok(n > 0)
        })
    }

    /// Creates an account; `None` when the name is taken (nothing changed).
    pub async fn create_account(
        &self,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "INSERT INTO account (name, password_hash, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(name)
            .bind(password_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(r) => Some(r.try_get("id")?),
                None => None,
            })
        })
    }

    pub async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query("SELECT id, name, created_at FROM account ORDER BY name")
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(Account {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                });
            }
            Ok(out)
        })
    }

    /// The id and password hash of an account, for sign-in.
    pub async fn account_password(&self, name: &str) -> StoreResult<Option<(i64, String)>> {
        on_pool!(self, |pool| {
            let row = sqlx::query("SELECT id, password_hash FROM account WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(r) => Some((r.try_get("id")?, r.try_get("password_hash")?)),
                None => None,
            })
        })
    }

    /// The id of an account by name.
    pub async fn account_id(&self, name: &str) -> StoreResult<Option<i64>> {
        Ok(self.account_password(name).await?.map(|(id, _)| id))
    }

    /// Removes an account with its sessions and tokens; false when there was none.
    pub async fn remove_account(&self, name: &str) -> StoreResult<bool> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Explicit deletes, not only ON DELETE CASCADE: signing out must not depend
            // on a connection setting (SQLite's foreign_keys pragma).
            let sub = "(SELECT id FROM account WHERE name = $1)";
            sqlx::query(&format!("DELETE FROM session WHERE account_id IN {sub}"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("DELETE FROM api_token WHERE account_id IN {sub}"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM account WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Replaces an account's password and ends its sessions; false when there is none.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> StoreResult<bool> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE account SET password_hash = $2 WHERE name = $1")
                .bind(name)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM session WHERE account_id IN (SELECT id FROM account WHERE name = $1)",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    pub async fn create_session(
        &self,
        id_hash: &str,
        account_id: i64,
        csrf_token: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        on_pool!(self, |pool| {
            // Expired rows are dropped here, at sign-in, so the table stays small without
            // a sweeper of its own.
            sqlx::query("DELETE FROM session WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO session (id_hash, account_id, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id_hash)
            .bind(account_id)
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The unexpired session with this id hash, if any.
    pub async fn session(&self, id_hash: &str, now: i64) -> StoreResult<Option<SessionRow>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT s.account_id, a.name, s.csrf_token, s.expires_at FROM session s \
                 JOIN account a ON a.id = s.account_id WHERE s.id_hash = $1 AND s.expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(r) => Some(SessionRow {
                    account_id: r.try_get("account_id")?,
                    account_name: r.try_get("name")?,
                    csrf_token: r.try_get("csrf_token")?,
                    expires_at: r.try_get("expires_at")?,
                }),
                None => None,
            })
        })
    }

    pub async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM session WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Stores a new token's hash; `None` when the name is taken (nothing changed).
    pub async fn create_token(
        &self,
        name: &str,
        token_hash: &str,
        account_id: Option<i64>,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "INSERT INTO api_token (name, token_hash, account_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(name)
            .bind(token_hash)
            .bind(account_id)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(r) => Some(r.try_get("id")?),
                None => None,
            })
        })
    }

    /// The unrevoked token with this hash, if any; records when it was last used. The
    /// record is written at most once a minute per token, so that a script polling the API
    /// does not turn every read into a database write.
    pub async fn token_by_hash(&self, token_hash: &str, now: i64) -> StoreResult<Option<TokenRow>> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT id, name, account_id, last_used_at FROM api_token \
                 WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?;
            let Some(r) = row else {
                return Ok(None);
            };
            let token = TokenRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                account_id: r.try_get("account_id")?,
            };
            let last: Option<i64> = r.try_get("last_used_at")?;
            if last.is_none_or(|t| now - t >= 60_000) {
                sqlx::query("UPDATE api_token SET last_used_at = $2 WHERE id = $1")
                    .bind(token.id)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
            Ok(Some(token))
        })
    }

    pub async fn list_tokens(&self) -> StoreResult<Vec<TokenInfo>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT t.id, t.name, a.name AS account, t.created_at, t.last_used_at, \
                 t.revoked_at FROM api_token t LEFT JOIN account a ON a.id = t.account_id \
                 ORDER BY t.name",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(TokenInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    account: r.try_get("account")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                });
            }
            Ok(out)
        })
    }

    /// Revokes a token by name; false when there is no such unrevoked token.
    pub async fn revoke_token(&self, name: &str, now: i64) -> StoreResult<bool> {
        on_pool!(self, |pool| {
            let done = sqlx::query(
                "UPDATE api_token SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            )
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
