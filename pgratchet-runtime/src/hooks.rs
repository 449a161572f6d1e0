//! Hooks: async callbacks around a run and around each migration (e.g. take a backup before
//! migrating). A failing `BeforeRun` or `BeforeEach` hook stops the run before that step.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

/// The error type hooks return.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

type HookFn = dyn Fn(HookContext) -> Pin<Box<dyn Future<Output = Result<(), HookError>> + Send>>
    + Send
    + Sync;

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookPoint {
    /// Under the lock, before the first pending migration (only when something is pending).
    BeforeRun,
    /// After the last migration of a run that applied something.
    AfterRun,
    /// Before each migration.
    BeforeEach,
    /// After each migration was applied and recorded.
    AfterEach,
}

/// What a hook is told.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct HookContext {
    /// Where in the run the hook is called.
    pub point: HookPoint,
    /// The versions this run is about to apply (or applied, for `AfterRun`).
    pub pending: Vec<i64>,
    /// The migration concerned, for `BeforeEach` and `AfterEach`: version and name.
    pub migration: Option<(i64, String)>,
}

impl HookContext {
    /// Around the whole run.
    pub(crate) fn run(point: HookPoint, pending: &[i64]) -> Self {
        HookContext {
            point,
            pending: pending.to_vec(),
            migration: None,
        }
    }

    /// Around one migration.
    pub(crate) fn each(point: HookPoint, pending: &[i64], migration: &crate::Migration) -> Self {
        HookContext {
            point,
            pending: pending.to_vec(),
            migration: Some((migration.version(), migration.name().to_owned())),
        }
    }
}

/// The hooks of a [`crate::Migrator`].
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    hooks: Vec<(HookPoint, Arc<HookFn>)>,
}

impl Hooks {
    pub(crate) fn add<F, Fut>(&mut self, point: HookPoint, hook: F)
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        self.hooks
            .push((point, Arc::new(move |context| Box::pin(hook(context)))));
    }

    /// Calls every hook registered for `context.point`, in order; the first error stops, and
    /// comes back with the point it was called at.
    pub(crate) async fn call(&self, context: HookContext) -> Result<(), (HookPoint, HookError)> {
        for (point, hook) in &self.hooks {
            if *point == context.point {
                hook(context.clone())
                    .await
                    .map_err(|source| (context.point, source))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.hooks.iter().map(|(point, _)| point))
            .finish()
    }
}
