//! Finding rooms on the LAN (docs/PROTOCOL.md §14), in the network lab (tests/src/netlab.rs):
//! real `tertulia-server`/`tertulia-chat` processes in the namespaces lanA and lanB, checked
//! against independent DNS-SD stacks (python-zeroconf, Avahi). Needs root; without the lab
//! every trial is reported ignored with the reason (`NETLAB_REQUIRED=1` makes that a failure).

use tertulia_e2e::netlab::{self, netlab_py, Failed, NsProcess, Trial, LAB_WAIT, LAN_A};

/// The lab itself: lanB reaches lanA across the router's bridge (what every trial relies on).
fn lab_lan_hosts_reach_each_other() -> Result<(), Failed> {
    let mut reach = netlab_py("lanB");
    reach.args(["reach", "--host", LAN_A, "--timeout", "10"]);
    let mut reach = NsProcess::spawn("reach lanB->lanA", reach)?;
    let status = reach.wait_exit(LAB_WAIT)?;
    if !status.success() {
        return Err(format!("lanB cannot reach lanA\n{}", reach.transcript()).into());
    }
    Ok(())
}

fn main() {
    netlab::run_trials(vec![Trial::test(
        "lab_lan_hosts_reach_each_other",
        lab_lan_hosts_reach_each_other,
    )]);
}
