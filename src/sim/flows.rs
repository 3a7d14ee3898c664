//! The seed flows, ready to run against the simulators: which scheme, which simulators it
//! needs, the environment that points the scheme at them, and how to change one source
//! record so a rerun has something to update. `ferry demo` runs every flow this way.

use super::erp_standard::{ErpStandardConfig, ErpStandardSim};
use super::fxiaoke::{FxiaokeConfig, FxiaokeSim};
use super::guanyi::{GuanyiConfig, GuanyiSim};
use super::jackyun::{JackyunConfig, JackyunSim};
use super::jdy::{JdyConfig, JdySim};
use super::k3cloud::{K3CloudConfig, K3CloudSim};
use super::simply::{SimplyConfig, SimplySim};
use super::SimHandle;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::io;

/// One seed flow: a shipped scheme and the simulators behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    GuanyiToK3Cloud,
    JdyToJackyun,
    SimplyToK3Cloud,
    K3CloudToSimply,
    ErpStandardToFxiaoke,
}

impl Flow {
    pub const ALL: [Flow; 5] = [
        Flow::GuanyiToK3Cloud,
        Flow::JdyToJackyun,
        Flow::SimplyToK3Cloud,
        Flow::K3CloudToSimply,
        Flow::ErpStandardToFxiaoke,
    ];

    /// The scheme's file name under `schemes/`.
    pub fn file(self) -> &'static str {
        match self {
            Flow::GuanyiToK3Cloud => "guanyi-shops-to-kingdee-customers.yaml",
            Flow::JdyToJackyun => "jdy-purchase-inbound-to-jackyun-customers.yaml",
            Flow::SimplyToK3Cloud => "simply-accounts-to-kingdee-customers.yaml",
            Flow::K3CloudToSimply => "kingdee-customers-to-simply-accounts.yaml",
            Flow::ErpStandardToFxiaoke => "erp-standard-orders-to-fxiaoke.yaml",
        }
    }

    /// The scheme text, shipped inside the binary.
    pub fn scheme(self) -> &'static str {
        match self {
            Flow::GuanyiToK3Cloud => include_str!("../../schemes/guanyi-shops-to-kingdee-customers.yaml"),
            Flow::JdyToJackyun => include_str!("../../schemes/jdy-purchase-inbound-to-jackyun-customers.yaml"),
            Flow::SimplyToK3Cloud => include_str!("../../schemes/simply-accounts-to-kingdee-customers.yaml"),
            Flow::K3CloudToSimply => include_str!("../../schemes/kingdee-customers-to-simply-accounts.yaml"),
            Flow::ErpStandardToFxiaoke => include_str!("../../schemes/erp-standard-orders-to-fxiaoke.yaml"),
        }
    }
}

/// The source simulator of a running flow, for changing a record.
enum Source {
    Guanyi(GuanyiSim),
    Jdy(JdySim),
    Simply(SimplySim),
    K3Cloud(K3CloudSim),
    ErpStandard(ErpStandardSim),
}

/// The simulators of a running flow, for tests and inspection (`None` where unused).
#[derive(Default)]
pub struct Sims {
    pub guanyi: Option<GuanyiSim>,
    pub k3cloud: Option<K3CloudSim>,
    pub jdy: Option<JdySim>,
    pub jackyun: Option<JackyunSim>,
    pub simply: Option<SimplySim>,
    pub fxiaoke: Option<FxiaokeSim>,
    pub erp_standard: Option<ErpStandardSim>,
}

/// A flow whose simulators are listening.
pub struct Running {
    env: HashMap<&'static str, String>,
    source: Source,
    handles: Vec<SimHandle>,
    pub sims: Sims,
}

async fn listener() -> io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind("127.0.0.1:0").await
}

fn k3_env(env: &mut HashMap<&'static str, String>, handle: &SimHandle, config: &K3CloudConfig) {
    env.insert("K3CLOUD_URL", format!("{}/k3cloud/", handle.base_url()));
    env.insert("K3CLOUD_ACCT_ID", config.acct_id.clone());
    env.insert("K3CLOUD_USERNAME", config.username.clone());
    env.insert("K3CLOUD_APP_ID", config.app_id.clone());
    env.insert("K3CLOUD_APP_SECRET", config.app_secret.clone());
}

fn simply_env(env: &mut HashMap<&'static str, String>, handle: &SimHandle, config: &SimplyConfig) {
    env.insert("SIMPLY_URL", handle.base_url());
    env.insert("SIMPLY_USERNAME", config.username.clone());
    env.insert("SIMPLY_ACCESS_KEY", config.access_key.clone());
}

/// Starts the simulators of `flow` on free ports of 127.0.0.1.
pub async fn start(flow: Flow) -> io::Result<Running> {
    start_sized(flow, None).await
}

/// As [`start`], with `records` source records instead of the demo's count (`ferry test
/// --record` keeps recordings small).
pub async fn start_sized(flow: Flow, records: Option<u64>) -> io::Result<Running> {
    let mut env = HashMap::new();
    let mut sims = Sims::default();
    let (source, handles) = match flow {
        Flow::GuanyiToK3Cloud => {
            let gy_config = GuanyiConfig {
                shops: records.unwrap_or(230),
                ..GuanyiConfig::default()
            };
            let k3_config = K3CloudConfig::default();
            let (gy, gy_handle) = GuanyiSim::start(gy_config.clone(), listener().await?).await?;
            let (k3, k3_handle) = K3CloudSim::start(k3_config.clone(), listener().await?).await?;
            sims.k3cloud = Some(k3);
            sims.guanyi = Some(gy.clone());
            env.insert("GUANYI_URL", GuanyiSim::api_url(&gy_handle));
            env.insert("GUANYI_APPKEY", gy_config.appkey.clone());
            env.insert("GUANYI_SESSIONKEY", gy_config.sessionkey.clone());
            env.insert("GUANYI_SECRET", gy_config.secret.clone());
            k3_env(&mut env, &k3_handle, &k3_config);
            (Source::Guanyi(gy), vec![gy_handle, k3_handle])
        }
        Flow::JdyToJackyun => {
            let jdy_config = JdyConfig {
                records: records.unwrap_or(180),
                ..JdyConfig::default()
            };
            let jky_config = JackyunConfig::default();
            let (jdy, jdy_handle) = JdySim::start(jdy_config.clone(), listener().await?).await?;
            let (jky, jky_handle) = JackyunSim::start(jky_config.clone(), listener().await?).await?;
            sims.jackyun = Some(jky);
            sims.jdy = Some(jdy.clone());
            env.insert("JDY_URL", jdy_handle.base_url());
            env.insert("JDY_CLIENT_ID", jdy_config.client_id.clone());
            env.insert("JDY_CLIENT_SECRET", jdy_config.client_secret.clone());
            env.insert("JDY_OUTER_INSTANCE_ID", jdy_config.outer_instance_id.clone());
            env.insert("JACKYUN_URL", jky_handle.base_url());
            env.insert("JACKYUN_APPKEY", jky_config.appkey.clone());
            env.insert("JACKYUN_SECRET", jky_config.secret.clone());
            (Source::Jdy(jdy), vec![jdy_handle, jky_handle])
        }
        Flow::SimplyToK3Cloud | Flow::K3CloudToSimply => {
            let simply_config = SimplyConfig {
                records: records.unwrap_or(150),
                ..SimplyConfig::default()
            };
            let k3_config = match records {
                Some(records) => K3CloudConfig {
                    records,
                    ..K3CloudConfig::default()
                },
                None => K3CloudConfig::default(),
            };
            let (simply, simply_handle) = SimplySim::start(simply_config.clone(), listener().await?).await?;
            let (k3, k3_handle) = K3CloudSim::start(k3_config.clone(), listener().await?).await?;
            simply_env(&mut env, &simply_handle, &simply_config);
            k3_env(&mut env, &k3_handle, &k3_config);
            sims.simply = Some(simply.clone());
            sims.k3cloud = Some(k3.clone());
            let source = if flow == Flow::SimplyToK3Cloud {
                Source::Simply(simply)
            } else {
                Source::K3Cloud(k3)
            };
            (source, vec![simply_handle, k3_handle])
        }
        Flow::ErpStandardToFxiaoke => {
            let erp_config = ErpStandardConfig {
                records: records.unwrap_or(120),
                ..ErpStandardConfig::default()
            };
            // A tenant with quota to spare: the demo pushes 120 orders at once, more than
            // the default 100 calls per 20 s (throttling has its own tests).
            let fx_config = FxiaokeConfig {
                interface_limit: None,
                ..FxiaokeConfig::default()
            };
            let (erp, erp_handle) = ErpStandardSim::start(erp_config.clone(), listener().await?).await?;
            let (fx, fx_handle) = FxiaokeSim::start(fx_config.clone(), listener().await?).await?;
            sims.fxiaoke = Some(fx);
            sims.erp_standard = Some(erp.clone());
            env.insert("ERP_STD_URL", erp_handle.base_url());
            env.insert("ERP_STD_TOKEN", erp_config.token.clone());
            env.insert("FXIAOKE_URL", fx_handle.base_url());
            env.insert("FXIAOKE_APP_ID", fx_config.app_id.clone());
            env.insert("FXIAOKE_APP_SECRET", fx_config.app_secret.clone());
            env.insert("FXIAOKE_PERMANENT_CODE", fx_config.permanent_code.clone());
            env.insert("FXIAOKE_OPEN_USER_ID", fx_config.open_user_id.clone());
            env.insert("FXIAOKE_DATA_CENTER_ID", fx_config.data_center_id.clone());
            (Source::ErpStandard(erp), vec![erp_handle, fx_handle])
        }
    };
    Ok(Running {
        env,
        source,
        handles,
        sims,
    })
}

impl Running {
    /// The environment that points the flow's scheme at its simulators.
    pub fn env(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.env.get(name).cloned()
    }

    /// The environment that points the flow's scheme at its simulators, as a map.
    pub fn env_map(&self) -> HashMap<String, String> {
        self.env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    /// Changes one source record (modified 90 s ago, inside the next run's window). Each
    /// simulator gets the instant and stamps it the way its vendor does: Simply in its
    /// database zone, UTC by default (reference §5), Guanyi and jdy in China wall-clock time
    /// (§1, §3), the ERP standard interface in epoch milliseconds (seed 000 §3).
    pub fn change_one(&self) -> bool {
        let at: DateTime<Utc> = Utc::now() - chrono::Duration::seconds(90);
        match &self.source {
            Source::Guanyi(sim) => sim.touch(3, at),
            Source::Jdy(sim) => sim.touch(3, at),
            Source::Simply(sim) => sim.touch(3, at),
            Source::K3Cloud(sim) => sim.touch(3, at),
            Source::ErpStandard(sim) => sim.touch(3, at),
        }
    }

    /// Stops the simulators.
    pub async fn shutdown(self) {
        for handle in self.handles {
            handle.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Tz;

    /// The instant a `yyyy-MM-dd HH:mm:ss` text names on a clock in `zone`.
    fn read_clock(text: &serde_json::Value, zone: Tz) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(text.as_str().unwrap(), "%Y-%m-%d %H:%M:%S").unwrap();
        zone.from_local_datetime(&naive).unwrap().with_timezone(&Utc)
    }

    /// True when `stamped` is the 90-seconds-ago instant of a change made between `before`
    /// and now (whole seconds).
    fn ninety_seconds_ago(stamped: DateTime<Utc>, before: DateTime<Utc>) -> bool {
        let earliest = before - chrono::Duration::seconds(91);
        let latest = Utc::now() - chrono::Duration::seconds(89);
        (earliest..=latest).contains(&stamped)
    }

    #[tokio::test]
    async fn change_one_stamps_each_source_on_its_vendors_clock() {
        let running = start(Flow::SimplyToK3Cloud).await.unwrap();
        let before = Utc::now();
        assert!(running.change_one());
        let account = running.sims.simply.as_ref().unwrap().account(3).unwrap();
        let stamped = read_clock(&account["modifiedtime"], chrono_tz::UTC);
        assert!(ninety_seconds_ago(stamped, before), "Simply keeps UTC text: {account}");
        running.shutdown().await;

        let running = start(Flow::GuanyiToK3Cloud).await.unwrap();
        let before = Utc::now();
        assert!(running.change_one());
        let shop = running.sims.guanyi.as_ref().unwrap().shop(3).unwrap();
        let stamped = read_clock(&shop["modify_date"], chrono_tz::Asia::Shanghai);
        assert!(ninety_seconds_ago(stamped, before), "Guanyi keeps China time: {shop}");
        running.shutdown().await;

        let running = start(Flow::JdyToJackyun).await.unwrap();
        let before = Utc::now();
        assert!(running.change_one());
        let bill = running.sims.jdy.as_ref().unwrap().bill(3).unwrap();
        let stamped = read_clock(&bill["modify_time"], chrono_tz::Asia::Shanghai);
        assert!(ninety_seconds_ago(stamped, before), "jdy keeps China time: {bill}");
        running.shutdown().await;

        let running = start(Flow::ErpStandardToFxiaoke).await.unwrap();
        let before = Utc::now();
        assert!(running.change_one());
        let order = running.sims.erp_standard.as_ref().unwrap().order(3).unwrap();
        let millis = order["masterFieldVal"]["lastModifyTime"].as_i64().unwrap();
        let stamped = DateTime::from_timestamp_millis(millis).unwrap();
        assert!(ninety_seconds_ago(stamped, before), "epoch milliseconds: {order}");
        running.shutdown().await;
    }
}
