//! The preseed that forms a planned cluster again: what an interactive
//! `microcloud init` offers to save, so the same cluster can be set up on
//! fresh machines without answering the questions again.

use ipnet::IpNet;

use super::model::LXD_STORAGE_DIRECTORY;
use super::{DiskRequest, Preseed, System, SystemStorage};
use crate::plan::ClusterPlan;

impl Preseed {
    /// The preseed for `plan`, found by multicast in `lookup_subnet`. It has
    /// no passphrase: a secret is never written down for the person.
    pub fn reproducing(plan: &ClusterPlan, lookup_subnet: IpNet) -> Preseed {
        let systems = plan
            .members
            .iter()
            .map(|member| System {
                name: member.name.clone(),
                storage: member.local_source.as_ref().map(|source| SystemStorage {
                    local: Some(DiskRequest {
                        path: if source.path.is_empty() {
                            LXD_STORAGE_DIRECTORY.to_string()
                        } else {
                            source.path.clone()
                        },
                        wipe: source.wipe,
                        encrypt: false,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        Preseed {
            initiator: Some(plan.initiator.clone()),
            lookup_subnet: Some(lookup_subnet.trunc()),
            systems,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use crate::plan::{
        ClusterPlan, DiskChoice, LocalPoolPlan, LocalSource, MemberPlan, PlanRequest, ProfilePlan,
    };
    use crate::preseed::Preseed;

    fn member(n: u8, path: &str, wipe: bool) -> MemberPlan {
        MemberPlan {
            name: format!("micro{n}"),
            address: IpAddr::from([10, 0, 0, n]),
            local_source: Some(LocalSource {
                path: path.into(),
                wipe,
            }),
        }
    }

    fn plan(members: Vec<MemberPlan>) -> ClusterPlan {
        ClusterPlan {
            initiator: "micro1".into(),
            existing_members: Vec::new(),
            members,
            local_pool: Some(LocalPoolPlan {
                driver: "zfs".into(),
                exists: false,
            }),
            network: None,
            profile: ProfilePlan {
                root_pool: Some("local".into()),
                network: None,
            },
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_saved_preseed_asks_for_the_same_sources_again() {
        let plan = plan(vec![
            member(1, "/dev/disk/by-id/wwn-1", true),
            member(2, "", false),
            member(3, "/srv/pool", false),
        ]);
        let yaml = Preseed::reproducing(&plan, "10.0.0.7/24".parse().unwrap()).to_yaml();
        assert_eq!(
            yaml,
            "initiator: micro1\n\
             lookup_subnet: 10.0.0.0/24\n\
             systems:\n\
             - name: micro1\n  storage:\n    local:\n      path: /dev/disk/by-id/wwn-1\n      wipe: true\n\
             - name: micro2\n  storage:\n    local:\n      path: default\n\
             - name: micro3\n  storage:\n    local:\n      path: /srv/pool\n"
        );
        // Without a passphrase it is refused as upstream refuses it, with the
        // key to add; with one it is valid and asks for the same sources.
        let err = Preseed::parse(&yaml, "saved.yaml")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.to_string().contains("Missing session passphrase"),
            "{err}"
        );
        let preseed =
            Preseed::parse(&format!("session_passphrase: again\n{yaml}"), "saved.yaml").unwrap();
        preseed.validate().unwrap();
        let addresses: BTreeMap<String, IpAddr> = plan
            .members
            .iter()
            .map(|m| (m.name.clone(), m.address))
            .collect();
        let request = PlanRequest::from_preseed(&preseed, "micro1", &addresses).unwrap();
        let choice = |path: &str, wipe| DiskChoice {
            path: path.into(),
            wipe,
        };
        assert_eq!(
            request.local_storage.explicit,
            BTreeMap::from([
                ("micro1".to_string(), choice("/dev/disk/by-id/wwn-1", true)),
                ("micro2".to_string(), choice("", false)),
                ("micro3".to_string(), choice("/srv/pool", false)),
            ])
        );
    }

    #[test]
    fn without_local_storage_the_systems_have_no_storage_key() {
        let mut plan = plan(vec![member(1, "", false)]);
        plan.members[0].local_source = None;
        let yaml = Preseed::reproducing(&plan, "10.0.0.0/24".parse().unwrap()).to_yaml();
        assert_eq!(
            yaml,
            "initiator: micro1\nlookup_subnet: 10.0.0.0/24\nsystems:\n- name: micro1\n"
        );
        Preseed::parse(&yaml, "saved.yaml")
            .unwrap()
            .validate()
            .unwrap();
    }
}
