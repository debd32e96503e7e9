// A frontend as supabase-js writes one, driven line by line by the Python tests.
//
// argv[2] is a JSON plan: {url, anonKey, email?, password?, accessToken?, channels: [{name,
// config?, postgres?: [{event, schema?, table?, filter?}], broadcast?: [event], presence?: bool}]}.
// Everything that happens is printed as one JSON object per line on stdout; commands arrive as
// JSON lines on stdin: insert, send, setAuth, track, untrack, exit.
import { createClient } from '@supabase/supabase-js'
import readline from 'node:readline'
import WebSocket from 'ws'

const plan = JSON.parse(process.argv[2])
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const supabase = createClient(plan.url, plan.anonKey, {
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: { transport: WebSocket, params: plan.realtimeParams ?? {} },
})

if (plan.email) {
  const { data, error } = await supabase.auth.signInWithPassword({ email: plan.email, password: plan.password })
  if (error) {
    emit({ type: 'fatal', message: error.message })
    process.exit(1)
  }
  emit({ type: 'signed_in', user_id: data.user.id })
}
if (plan.accessToken) {
  await supabase.realtime.setAuth(plan.accessToken)
}

const channels = {}
for (const spec of plan.channels ?? []) {
  const channel = supabase.channel(spec.name, { config: spec.config ?? {} })
  for (const binding of spec.postgres ?? []) {
    channel.on('postgres_changes', binding, (payload) => emit({ type: 'postgres', channel: spec.name, payload }))
  }
  for (const event of spec.broadcast ?? []) {
    channel.on('broadcast', { event }, (payload) => emit({ type: 'broadcast', channel: spec.name, payload }))
  }
  if (spec.presence) {
    channel.on('presence', { event: 'sync' }, () =>
      emit({ type: 'presence_sync', channel: spec.name, state: channel.presenceState() }))
    channel.on('presence', { event: 'join' }, ({ key, newPresences }) =>
      emit({ type: 'presence_join', channel: spec.name, key, newPresences }))
  }
  channel.on('system', {}, (payload) => emit({ type: 'system', channel: spec.name, payload }))
  channel.subscribe((status, error) =>
    emit({ type: 'status', channel: spec.name, status, error: error ? String(error.message ?? error) : null }))
  channels[spec.name] = channel
}

const commands = readline.createInterface({ input: process.stdin })
for await (const line of commands) {
  const command = JSON.parse(line)
  try {
    if (command.cmd === 'insert') {
      const { data, error } = await supabase.from(command.table).insert(command.row).select().single()
      emit({ type: 'inserted', data, error: error ? error.message : null })
    } else if (command.cmd === 'send') {
      const result = await channels[command.channel].send({ type: 'broadcast', event: command.event, payload: command.payload })
      emit({ type: 'sent', channel: command.channel, result })
    } else if (command.cmd === 'setAuth') {
      await supabase.realtime.setAuth(command.token)
      emit({ type: 'auth_set' })
    } else if (command.cmd === 'track') {
      const result = await channels[command.channel].track(command.payload)
      emit({ type: 'tracked', channel: command.channel, result })
    } else if (command.cmd === 'exit') {
      await supabase.removeAllChannels()
      break
    }
  } catch (error) {
    emit({ type: 'error', cmd: command.cmd, message: String(error) })
  }
}
process.exit(0)
