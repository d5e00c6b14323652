-- /etc/lsyncd.conf on node1 of a three-node active/active cluster (node2 and node3 run the same
-- file with the other two host names). Plain lsyncd syntax: each node pushes its volume to the
-- others. syncd reads the two sync{} blocks of one source as one node of a two-way mesh (source
-- and targetdir are the same directory, so it is two-way; `bidirectional = true` says so
-- explicitly and also covers different paths). Concurrent writes are resolved the same way on
-- every node; the losing version is kept as NAME.sync-conflict-...; deletes are versions.
--
-- syncd's own keys (ignored by nothing: lsyncd would reject them, so keep this file for syncd):
--   bidirectional = true|false     two-way (default: true when source == targetdir)
--   syncd = { stateDir = "/var/lib/syncd/volume",    -- the index (default /var/lib/syncd/<hash>)
--             conflictHook = "/usr/local/bin/on-conflict",  -- run as HOOK PATH COPY ROOT
--             maxDeleteShare = 50,                   -- mass-delete brake, percent of the files
--             tombstoneMinAge = 604800, tombstoneMaxAge = 15552000,
--             remoteSyncd = "/usr/bin/syncd", transport = "auto" }
settings {
  logfile        = "/var/log/lsyncd/lsyncd.log",
  statusFile     = "/var/log/lsyncd/lsyncd.status",
  statusInterval = 5,
}

local volume = "/opt/acme2certifier/volume/"
local ssh = "/usr/bin/ssh -l root -i /root/.ssh/id_syncd -o StrictHostKeyChecking=accept-new"

for _, peer in ipairs { "node2", "node3" } do
  sync {
    default.rsyncssh,
    source        = volume,
    host          = peer,
    targetdir     = volume,
    bidirectional = true,
    exclude       = { "*.swp", "/tmp/" },
    rsync         = { rsh = ssh, archive = true, compress = true },
    syncd         = { conflictHook = "logger -t syncd-conflict" },
  }
end
