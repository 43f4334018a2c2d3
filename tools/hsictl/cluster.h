// tools/hsictl/cluster.h: `hsictl cluster`, the SSI cluster as etcd holds it
// (issue 18): members and their leases, guests and where they are logged
// on, relocations under way and each guest's last outcome. It reads etcd
// directly (hsi/ssi/cluster.h), not hsid: the cluster's state is etcd's.
#ifndef HSI_TOOLS_HSICTL_CLUSTER_H_
#define HSI_TOOLS_HSICTL_CLUSTER_H_

#include "cli.h"

namespace hsi::tools {

// Prints the cluster (a table, or one JSON document with --json); uses
// --etcd (else $HSI_ETCD, else http://127.0.0.1:2379) and --cluster (else
// $HSI_CLUSTER, else ssi). Returns the exit code.
int ShowCluster(const Args& args);

}  // namespace hsi::tools

#endif  // HSI_TOOLS_HSICTL_CLUSTER_H_
