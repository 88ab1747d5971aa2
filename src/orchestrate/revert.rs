//! A last-in-first-out list of undo steps, as MicroCloud's `revert`: each step
//! that creates something registers how to remove it; on failure the steps run
//! in reverse order, on success they are dropped.

use futures_util::future::BoxFuture;

use crate::ui::Printer;

type UndoStep = BoxFuture<'static, anyhow::Result<()>>;

#[derive(Default)]
pub struct Reverter {
    steps: Vec<(String, UndoStep)>,
}

impl Reverter {
    pub fn new() -> Self {
        Reverter::default()
    }

    /// Registers how to undo something that was just created.
    pub fn add(&mut self, description: impl Into<String>, undo: UndoStep) {
        self.steps.push((description.into(), undo));
    }

    /// Takes over `other`'s steps, as if they had been added here.
    pub fn absorb(&mut self, other: Reverter) {
        self.steps.extend(other.steps);
    }

    /// Runs every undo step, newest first. A failing step does not stop the
    /// others; the failures are returned so the person knows what is left.
    pub async fn revert(self, printer: &Printer) -> Vec<String> {
        let mut left = Vec::new();
        for (description, undo) in self.steps.into_iter().rev() {
            match undo.await {
                Ok(()) => printer.status(format!("Undone: {description}")),
                Err(err) => {
                    let message = format!("{description}: {err:#}");
                    printer.warn(format!("Failed to undo {message}"));
                    left.push(message);
                }
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn undoes_newest_first_and_continues_after_a_failure() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut reverter = Reverter::new();
        for i in 0..3 {
            let order = order.clone();
            reverter.add(
                format!("step {i}"),
                Box::pin(async move {
                    order.lock().unwrap().push(i);
                    if i == 1 {
                        anyhow::bail!("boom")
                    } else {
                        Ok(())
                    }
                }),
            );
        }
        let left = reverter.revert(&Printer::new(true)).await;
        assert_eq!(*order.lock().unwrap(), vec![2, 1, 0]);
        assert_eq!(left, vec!["step 1: boom".to_string()]);
    }
}
