//! The dependency graph of a set of services: checked once, before anything starts.

use std::collections::HashMap;
use std::fmt;

use super::service::{Condition, Service};

/// Why a set of services cannot be supervised.
///
/// ```
/// use sheepdog::{Command, Condition, Service, Supervisor, SuperviseError};
/// let err = Supervisor::builder()
///     .service(Service::new("a", Command::new("true")).depends_on("b", Condition::Started))
///     .service(Service::new("b", Command::new("true")).depends_on("a", Condition::Started))
///     .check()
///     .unwrap_err();
/// assert_eq!(err, SuperviseError::Cycle(vec!["a".into(), "b".into(), "a".into()]));
/// assert_eq!(err.to_string(), "dependency cycle: a -> b -> a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SuperviseError {
    /// Two services have the same name.
    Duplicate(String),
    /// `service` depends on `dependency`, which is not one of the services.
    UnknownDependency {
        /// The service that names it.
        service: String,
        /// The name that matches no service.
        dependency: String,
    },
    /// The services in this cycle (the first one again at the end) wait for each other.
    Cycle(Vec<String>),
    /// [`SupervisorBuilder::start`](crate::SupervisorBuilder::start) was called outside a
    /// tokio runtime.
    NoRuntime,
}

impl fmt::Display for SuperviseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperviseError::Duplicate(name) => write!(f, "two services are named `{name}`"),
            SuperviseError::UnknownDependency {
                service,
                dependency,
            } => write!(
                f,
                "service `{service}` depends on `{dependency}`, which is not a service"
            ),
            SuperviseError::Cycle(names) => write!(f, "dependency cycle: {}", names.join(" -> ")),
            SuperviseError::NoRuntime => {
                f.write_str("a supervisor needs a tokio runtime to run in")
            }
        }
    }
}

impl std::error::Error for SuperviseError {}

/// Each service's dependencies as indices, in the order the services were given.
pub(crate) type Edges = Vec<Vec<(usize, Condition)>>;

/// Resolves the names in `depends_on` and refuses duplicates, unknown names and cycles.
pub(crate) fn resolve(services: &[Service]) -> Result<Edges, SuperviseError> {
    let mut index = HashMap::new();
    for (i, service) in services.iter().enumerate() {
        if index.insert(service.name(), i).is_some() {
            return Err(SuperviseError::Duplicate(service.name().to_owned()));
        }
    }
    let edges: Edges = services
        .iter()
        .map(|service| {
            service
                .depends_on
                .iter()
                .map(|(name, condition)| match index.get(name.as_str()) {
                    Some(&i) => Ok((i, *condition)),
                    None => Err(SuperviseError::UnknownDependency {
                        service: service.name().to_owned(),
                        dependency: name.clone(),
                    }),
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    if let Some(cycle) = find_cycle(&edges) {
        return Err(SuperviseError::Cycle(
            cycle
                .into_iter()
                .map(|i| services[i].name().to_owned())
                .collect(),
        ));
    }
    Ok(edges)
}

/// A cycle as a path that ends where it began, found by depth-first search.
fn find_cycle(edges: &Edges) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(node: usize, edges: &Edges, marks: &mut [Mark], path: &mut Vec<usize>) -> bool {
        marks[node] = Mark::OnPath;
        path.push(node);
        for &(next, _) in &edges[node] {
            let mark = marks[next];
            if mark == Mark::OnPath {
                let start = path.iter().position(|&n| n == next).unwrap_or(0);
                path.drain(..start);
                path.push(next);
                return true;
            }
            if mark == Mark::New && visit(next, edges, marks, path) {
                return true;
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        false
    }
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        let mut path = Vec::new();
        if marks[start] == Mark::New && visit(start, edges, &mut marks, &mut path) {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    fn svc(name: &str, deps: &[&str]) -> Service {
        deps.iter()
            .fold(Service::new(name, Command::new("true")), |s, d| {
                s.depends_on(*d, Condition::Started)
            })
    }

    #[test]
    fn a_chain_resolves_to_indices() {
        let edges = resolve(&[svc("a", &[]), svc("b", &["a"]), svc("c", &["a", "b"])]).unwrap();
        assert_eq!(
            edges[2],
            vec![(0, Condition::Started), (1, Condition::Started)]
        );
    }

    #[test]
    fn a_cycle_is_named_from_where_it_closes() {
        let err = resolve(&[
            svc("x", &["a"]),
            svc("a", &["b"]),
            svc("b", &["c"]),
            svc("c", &["a"]),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
        let err = resolve(&[svc("self", &["self"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: self -> self");
    }

    #[test]
    fn unknown_and_duplicate_names_are_refused() {
        let err = resolve(&[svc("a", &["nope"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `a` depends on `nope`, which is not a service"
        );
        let err = resolve(&[svc("a", &[]), svc("a", &[])]).unwrap_err();
        assert_eq!(err, SuperviseError::Duplicate("a".into()));
    }
}
