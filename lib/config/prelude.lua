-- syncd's lsyncd-compatible configuration globals, written for syncd (LSYNCD-COMPAT.md §1-2, §6).
-- A config is a Lua program: it calls settings{} and sync{}; this file gives those calls lsyncd's
-- rules (key gauges, positional and getter forms, inheritance through integer keys, the three
-- defaults), and _syncd_finish() hands the result to C++ as plain tables.
-- Errors are raised at the caller's line (level 2) so messages carry the config's file:line.

local settingsGauge = {
  logfile = true, pidfile = true, nodaemon = true, onepass = true, statusFile = true,
  statusInterval = true, logfacility = true, logident = true, insist = true, inotifyMode = true,
  maxProcesses = true, maxDelays = true,
}
local current = {}
local syncs = {}

local function settingsFn(a)
  if type(a) ~= 'table' then return current[a] end  -- getter form: settings("insist")
  for k, v in pairs(a) do
    if type(k) == 'number' then k, v = v, true end  -- positional form: settings{ "insist" }
    if type(k) ~= 'string' or not settingsGauge[k] then
      error('setting "' .. tostring(k) .. '" unknown.', 2)
    end
    current[k] = v
  end
end
settings = settingsFn

-- The rsync sub-table keys (lsyncd 2.2.3 plus the 2.3 additions the issue asks for).
local rsyncGauge = {}
for k in ([[acls append append_verify archive backup backup_dir binary bwlimit checksum chmod chown
  compress copy_dirlinks copy_links copy_unsafe_links cvs_exclude delete_excluded devices dry_run
  executability existing group groupmap hard_links ignore_times inplace ipv4 ipv6 keep_dirlinks
  links one_file_system omit_dir_times omit_link_times owner password_file perms protect_args
  prune_empty_dirs quiet rsh rsync_path sparse specials suffix temp_dir timeout times update usermap
  verbose whole_file xattrs _extra]]):gmatch('%S+') do rsyncGauge[k] = true end

local sshGauge = { binary = true, identityFile = true, options = true, port = true, _extra = true }

-- syncd's own keys, in a `syncd = { ... }` sub-table of sync{} (README.md "Configuration").
local syncdGauge = {
  stateDir = true, rundir = true, remoteSyncd = true, remoteStateDir = true, remoteRundir = true,
  transport = true, conflictHook = true, maxDeleteShare = true, tombstoneMinAge = true,
  tombstoneMaxAge = true, fsync = true, peers = true,
}

local common = {
  source = true, delay = true, delete = true, exclude = true, excludeFrom = true, filter = true,
  filterFrom = true, init = true, maxDelays = true, maxProcesses = true, exitcodes = true,
  action = true, collect = true, prepare = true, checkgauge = true, rsync = rsyncGauge,
  bidirectional = true, syncd = syncdGauge,
}
local function gauge(extra)
  local g = {}
  for k, v in pairs(common) do g[k] = v end
  for k, v in pairs(extra) do g[k] = v end
  return g
end

-- The defaults: lsyncd's values. `_syncd_kind` tells C++ which one a sync came from.
default = {}
default.rsync = {
  _syncd_kind = 'rsync', delay = 15, delete = true, maxDelays = 1000, maxProcesses = 1,
  rsync = { binary = '/usr/bin/rsync', links = true, times = true, protect_args = true },
  checkgauge = gauge { target = true },
}
default.rsyncssh = {
  default.rsync,
  _syncd_kind = 'rsyncssh', onMove = true,
  ssh = { binary = '/usr/bin/ssh', _extra = {} },
  checkgauge = gauge { host = true, targetdir = true, onMove = true, ssh = sshGauge,
                       rsyncExitCodes = true, sshExitCodes = true },
}
default.direct = {
  default.rsync,
  _syncd_kind = 'direct', delay = 1, onMove = true,
  checkgauge = gauge { target = true, onMove = true, rsyncExitCodes = true },
}

-- lsyncd's inheritance: the user's own keys first, then each integer-keyed parent (recursively,
-- parents of parents too) fills in what is still unset; sub-tables merge key by key.
local function copy(v)
  if type(v) ~= 'table' then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end
local function inherit(dst, src, verbatim)
  for k, v in pairs(src) do
    if type(k) ~= 'number' or verbatim or src._verbatim then
      if dst[k] == nil then
        dst[k] = copy(v)
      elseif type(dst[k]) == 'table' and type(v) == 'table' and v._merge ~= false
             and k ~= 'checkgauge' then
        inherit(dst[k], v)
      end
    end
  end
  for k, v in ipairs(src) do
    if not verbatim and not src._verbatim and type(v) == 'table' then inherit(dst, v) end
  end
end

local function internal(k)
  return k == '_merge' or k == '_verbatim' or k:sub(1, 7) == '_syncd_'
end
local function checkgauge(cfg, g, prefix)
  for k, v in pairs(cfg) do
    if type(k) == 'string' and not internal(k) then
      local gv = g[k]
      if not gv then
        return 'Parameter "' .. prefix .. k .. '" unknown. ( if this is not a typo add it to checkgauge )'
      end
      if type(gv) == 'table' and type(v) == 'table' then
        local why = checkgauge(v, gv, prefix .. k .. '.')
        if why then return why end
      end
    end
  end
end

local function fromUser(user, key)
  return rawget(user, key) ~= nil
end

function sync(user)
  if type(user) ~= 'table' then error('sync{} needs a table', 2) end
  local cfg = {}
  inherit(cfg, user)
  if cfg.source == nil then error('source missing from sync.', 2) end
  -- A sync that names none of the defaults is a custom (layer 1-3) sync: its actions decide.
  local kind = cfg._syncd_kind or 'custom'
  if kind ~= 'custom' then
    local why = checkgauge(cfg, cfg.checkgauge, '')
    if why then error(why, 2) end
    if current.maxProcesses then cfg.maxProcesses = current.maxProcesses end
    if current.maxDelays then cfg.maxDelays = current.maxDelays end
    if kind == 'rsyncssh' and cfg.maxProcesses ~= 1 then
      error('default.rsyncssh must have maxProcesses set to 1.', 2)
    end
    if kind == 'rsyncssh' then
      if cfg.host == nil then error('default.rsyncssh needs "host" configured', 2) end
      if cfg.targetdir == nil then error('default.rsyncssh needs "targetdir" configured', 2) end
    elseif cfg.target == nil then
      error('default.rsync needs "target" configured', 2)
    end
  end
  if cfg.delay ~= nil and (type(cfg.delay) ~= 'number' or cfg.delay < 0) then
    error('delay must be a number and >= 0', 2)
  end
  for _, k in ipairs { 'exclude', 'filter' } do
    local v = cfg[k]
    if v ~= nil and type(v) ~= 'table' and type(v) ~= 'string' then
      error('type for ' .. k .. ' must be table or string', 2)
    end
  end
  local info = debug.getinfo(2, 'Sl')
  cfg._syncd_where = info and (info.short_src .. ':' .. tostring(info.currentline)) or '?'
  -- Which actions the user wrote (not inherited from a default): layer 1 / 2 / 3.
  cfg._syncd_user = {}
  for _, k in ipairs { 'action', 'init', 'collect', 'prepare', 'onStartup', 'onCreate', 'onModify',
                       'onDelete', 'onAttrib', 'onMove', 'onFull', 'full' } do
    if fromUser(user, k) or (kind == 'custom' and cfg[k] ~= nil) then cfg._syncd_user[k] = type(cfg[k]) end
  end
  cfg._syncd_kind = kind
  cfg._syncd_delay_given = fromUser(user, 'delay') or (kind == 'custom' and cfg.delay ~= nil)
  for _, p in ipairs(user) do
    if type(p) == 'table' and rawget(p, 'delay') ~= nil and p ~= default.rsync and p ~= default.rsyncssh
       and p ~= default.direct then
      cfg._syncd_delay_given = true  -- a user table (layer 3 style) that sets delay
    end
  end
  if default.rsync.delay ~= 15 or default.direct.delay ~= 1 then
    cfg._syncd_delay_given = true  -- the config overrode a default's delay (default.rsync.delay = 5)
  end
  syncs[#syncs + 1] = cfg
  return cfg
end

-- lsyncd 2.0 style `settings = { ... }` and 5.1-era helpers.
unpack = unpack or table.unpack
loadstring = loadstring or load
function string.starts(s, p) return s:sub(1, #p) == p end
function string.ends(s, p) return p == '' or s:sub(-#p) == p end
function log(cat, ...) _syncd_log(tostring(cat), table.concat({ ... }, '')) end

-- Layer-2 actions, at run time: an on* function calls spawn()/spawnShell(); syncd collects the
-- commands and runs them (one at a time, as lsyncd with maxProcesses = 1).
local spawned = nil
function spawn(agent, binary, ...)
  if spawned == nil then error('spawn() can only be called from an action', 2) end
  local argv = { tostring(binary) }
  local args = { ... }
  local first = 1
  if args[1] == '<' then
    -- As lsyncd's exec: '<' right after the binary makes the next argument the process's stdin.
    if type(args[2]) ~= 'string' then error("spawn(agent, binary, '<', text, ...): the text for stdin is missing", 2) end
    argv.stdin = args[2]
    first = 3
  end
  for i = first, select('#', ...) do
    local a = args[i]
    if type(a) == 'table' then  -- lsyncd expands table arguments (rsync._computed), drops nils
      for _, v in ipairs(a) do argv[#argv + 1] = tostring(v) end
    elseif a ~= nil then
      argv[#argv + 1] = tostring(a)
    end
  end
  spawned[#spawned + 1] = argv
end
function spawnShell(agent, command, ...)
  spawn(agent, '/bin/sh', '-c', command, '/bin/sh', ...)
end

-- now() and its timestamps ("Lsyncd.jiffies" userdata) are made in C (lib/config/config.cpp).
local T = _syncd_jiffies_value
-- A directory's entries: name -> true for a directory (not following symlinks), nil when it
-- cannot be read (logged as lsyncd does).
function readdir(path) return _syncd_readdir(tostring(path)) end
-- Ends syncd with exit code `code`, at once (lsyncd: exit()).
function terminate(code) _syncd_terminate(tonumber(code) or 0) end

-- User alarms: alarm(now() + 5, fn, extra) calls fn(timestamp, extra) once that time has come,
-- soonest first, after the actions due at that moment (lsyncd's UserAlarms).
local alarms = {}
local function announceAlarm() _syncd_alarm_next(alarms[1] and T(alarms[1].timestamp) or nil) end
function alarm(timestamp, func, extra)
  if not _syncd_is_jiffies(timestamp) then
    error(("bad argument #1 to 'alarm' (Lsyncd.jiffies expected, got %s)"):format(type(timestamp)), 2)
  end
  if type(func) ~= 'function' then error('alarm(timestamp, func, extra): func is not a function', 2) end
  local idx = #alarms + 1
  for k, v in ipairs(alarms) do
    if timestamp < v.timestamp then idx = k; break end
  end
  table.insert(alarms, idx, { timestamp = timestamp, func = func, extra = extra })
  announceAlarm()
end
-- Called by syncd when the soonest alarm is due: runs every alarm due at time t; returns the
-- errors they raised (each alarm runs even if an earlier one failed).
function _syncd_run_alarms(t)
  local errors = {}
  while alarms[1] and T(alarms[1].timestamp) <= t do
    local a = table.remove(alarms, 1)  -- before the call: it may add alarms of its own
    local ok, err = pcall(a.func, a.timestamp, a.extra)
    if not ok then
      errors[#errors + 1] = tostring(err)
      if tostring(err):find('\1syncd: terminate() called', 1, true) then break end  -- nothing more runs
    end
  end
  announceAlarm()
  return errors
end

-- observefd(fd, ready, writey): ready(fd) when fd can be read, writey(fd) when it can be written;
-- nonobservefd(fd) stops that.
local observed = {}
function observefd(fd, ready, writey)
  if math.type(fd) ~= 'integer' then error('observefd(fd, ready, writey): fd is not an integer', 2) end
  observed[fd] = { ready = ready, writey = writey }
  _syncd_observe(fd, ready ~= nil, writey ~= nil)
end
function nonobservefd(fd)
  if observed[fd] then
    observed[fd] = nil
    _syncd_observe(fd, false, false)
  end
end
function _syncd_fd_ready(fd, readable, writable)
  local o = observed[fd]
  if o and readable and o.ready then o.ready(fd) end
  o = observed[fd]
  if o and writable and o.writey then o.writey(fd) end
end
-- Called by syncd when it takes over the state after loading: what the config set up already.
function _syncd_announce()
  announceAlarm()
  for fd, o in pairs(observed) do _syncd_observe(fd, o.ready ~= nil, o.writey ~= nil) end
  return alarms[1] ~= nil or next(observed) ~= nil
end

-- The part of lsyncd's inlet (the layer-1 interface) an on* function can use through
-- event.inlet: getConfig(). The rest belongs to layer-1 actions, which syncd refuses.
local function inletFor(cfg)
  local inlet = { getConfig = function() return cfg end }
  return setmetatable(inlet, { __index = function(_, k)
    return function() error('inlet.' .. tostring(k) .. '() is part of lsyncd\'s layer-1 interface, which syncd does not provide', 2) end
  end })
end

-- Called by syncd: sync number i's `handler` for one event (a move: origin and destination).
function _syncd_call(i, handler, event, devent)
  local cfg = syncs[i]
  if event.source then cfg.source = event.source end  -- lsyncd's config.source: absolute, with '/'
  event.config = cfg
  event.inlet = inletFor(cfg)
  event.status = 'wait'
  if devent then
    devent.config = cfg
    devent.inlet = event.inlet
    devent.status = 'wait'
  end
  spawned = {}
  local ok, err = pcall(cfg[handler], event, devent)
  local out = spawned
  spawned = nil
  if not ok then error(err, 0) end
  return out
end

function _syncd_finish()
  if settings ~= settingsFn then
    error('Do not use settings = { ... }\n      please use settings{ ... } (without the equal sign)', 0)
  end
  return current, syncs
end
