// The user's usage today against their limits, from the database's chat_quota() (the same numbers
// the quota trigger enforces): messages sent and tokens used today, and the daily limits.
const NUMBER = new Intl.NumberFormat('en')

export async function usageToday(supabase) {
  return supabase.rpc('chat_quota')
}

/** 'Today: 3 / 500 messages · 1,204 / 100,000 tokens' */
export function usageLine(quota) {
  const count = (used, limit) => `${NUMBER.format(used)} / ${NUMBER.format(limit)}`
  return `Today: ${count(quota.messages_today, quota.messages_per_day)} messages`
    + ` · ${count(quota.tokens_today, quota.tokens_per_day)} tokens`
}
