//! `lxd-floor`: the floor of `scripts/bench` (issue 10), lab test support,
//! never shipped. The minimal REST-only formation of an N-member LXD cluster
//! in the lab, with MicroCloud's own LXD client over each machine's unix
//! socket and the LXD calls `microcloud preseed` makes, in its order, and
//! nothing else: the initiator's addresses, the bootstrap (then its member
//! Online, which LXD needs before it issues tokens), each joiner serially
//! (token on micro1, `PUT /1.0/cluster` on the joiner, waiting for its
//! operation), the `local` pool pending per member then global, the network
//! pending per member then global, the default profile. Prints the seconds it
//! took.
//!
//! Usage: lxd-floor LAB_DIR LAB_SUBNET N NETWORK_JSON
//! (NETWORK_JSON: `{"name","type","description","config"}` of the global POST)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use microcloud::clients::Transport;
use microcloud::clients::lxd::{ClusterPut, LxdClient, NetworksPost, StoragePoolsPost};

fn client(lab_dir: &str, i: usize) -> anyhow::Result<LxdClient> {
    let socket = PathBuf::from(format!("{lab_dir}/m{i}/lxd/unix.socket"));
    Ok(LxdClient::new(Transport::unix(
        &socket,
        format!("micro{i}"),
    )?))
}

async fn wait_online(lxd: &LxdClient, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members = lxd.cluster_members().await?;
        if members
            .iter()
            .any(|m| m.server_name == name && m.status == "Online")
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{name} not Online within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [lab_dir, subnet, n, network] = args.as_slice() else {
        bail!("usage: lxd-floor LAB_DIR LAB_SUBNET N NETWORK_JSON");
    };
    let n: usize = n.parse().context("N")?;
    let network: serde_json::Value = serde_json::from_str(network).context("NETWORK_JSON")?;
    let text = |k: &str| network[k].as_str().unwrap_or_default().to_string();
    let net_config: BTreeMap<String, String> =
        serde_json::from_value(network["config"].clone()).context("NETWORK_JSON config")?;
    let clients = (1..=n)
        .map(|i| client(lab_dir, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = &clients[0];
    let start = Instant::now();

    first
        .patch_server_config(
            &BTreeMap::from([
                ("core.https_address".to_string(), "[::]:8443".to_string()),
                (
                    "cluster.https_address".to_string(),
                    format!("{subnet}.1:8443"),
                ),
            ]),
            None,
        )
        .await?;
    first
        .put_cluster(&ClusterPut {
            server_name: "micro1".into(),
            enabled: true,
            ..Default::default()
        })
        .await?;
    wait_online(first, "micro1").await?;
    let certificate = first.server().await?.environment.certificate;
    for (i, joiner) in clients.iter().enumerate().skip(1) {
        let name = format!("micro{}", i + 1);
        let (token, _operation) = first.create_join_token(&name).await?;
        joiner
            .put_cluster(&ClusterPut {
                server_name: name.clone(),
                enabled: true,
                cluster_address: format!("{subnet}.1:8443"),
                cluster_certificate: certificate.clone(),
                server_address: format!("{subnet}.{}:8443", i + 1),
                cluster_password: Some(token.encode()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("join of {name}"))?;
    }
    for i in 1..=n {
        let pool = StoragePoolsPost {
            name: "local".into(),
            driver: "dir".into(),
            description: String::new(),
            config: BTreeMap::from([("source".into(), format!("{lab_dir}/m{i}/pool"))]),
        };
        first
            .create_storage_pool(&pool, Some(&format!("micro{i}")))
            .await?;
    }
    let pool = StoragePoolsPost {
        name: "local".into(),
        driver: "dir".into(),
        description: "Local storage on dir".into(),
        config: BTreeMap::new(),
    };
    first.create_storage_pool(&pool, None).await?;
    for i in 1..=n {
        let pending = NetworksPost {
            name: text("name"),
            kind: text("type"),
            description: String::new(),
            config: BTreeMap::new(),
        };
        first
            .create_network(&pending, Some(&format!("micro{i}")))
            .await?;
    }
    let global = NetworksPost {
        name: text("name"),
        kind: text("type"),
        description: text("description"),
        config: net_config,
    };
    first.create_network(&global, None).await?;
    let mut profile = first.profile("default").await?;
    profile.devices.insert(
        "root".into(),
        BTreeMap::from([
            ("path".into(), "/".into()),
            ("pool".into(), "local".into()),
            ("type".into(), "disk".into()),
        ]),
    );
    profile.devices.insert(
        "eth0".into(),
        BTreeMap::from([
            ("name".into(), "eth0".into()),
            ("network".into(), text("name")),
            ("type".into(), "nic".into()),
        ]),
    );
    first.put_profile("default", &profile).await?;
    println!("{:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
