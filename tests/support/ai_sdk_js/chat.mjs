// The AI SDK's Chat (what useChat runs, without React) over its DefaultChatTransport, pointed at
// the service as a frontend would: `api` at /api/chat, the chat id the conversation's, the
// Supabase access token as a bearer. One scenario per run, from the JSON plan in argv[2]; one
// JSON report on stdout when it ends (tests/support/ai_sdk.py reads it).
//
// plan: {package, api, token, chatId, scenario, text, messages?}
// scenarios:
//   send        send `text`, wait for the answer
//   stop        send, and call stop() at the first piece of text (the request is aborted)
//   drop        send; the connection drops after the first piece of text (a network error),
//               then resumeStream() on the same Chat
//   reload      as drop, then a new Chat (a reloaded page, holding `messages` as the app would
//               load them) calls resumeStream()
//   regenerate  send, then regenerate()
//   resume      a new Chat holding `messages` calls resumeStream()
//   parse       no service: the transport's own parser reads `body` (a response's text)

const plan = JSON.parse(process.argv[2]);
const { AbstractChat, DefaultChatTransport } = await import(plan.package ?? 'ai');

const requests = []; // {method, url, status, contentType, protocol}
const chunks = []; // every UI message chunk the transport parsed, in order
const finishes = []; // what onFinish was told

class NodeChatState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = 'ready';
    this.error = undefined;
  }
  pushMessage = message => { this.messages = this.messages.concat(message); };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), this.snapshot(message), ...this.messages.slice(index + 1)];
  };
  snapshot = value => structuredClone(value);
}

class NodeChat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new NodeChatState(messages) });
  }
}

class TappedTransport extends DefaultChatTransport {
  processResponseStream(stream) {
    return super.processResponseStream(stream).pipeThrough(new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
        if (chunk.type === 'text-delta') onFirstDelta();
      },
    }));
  }
}

let firstDelta = () => {};
let sawDelta = false;
function onFirstDelta() {
  if (!sawDelta) {
    sawDelta = true;
    firstDelta();
  }
}

// The network drops a POST's response after its first piece of text reached the page: the
// socket is gone (the service sees its client leave) and the page's read fails as browsers'
// and Node's do when a connection is lost.
function fetchThatDrops() {
  let dropped = false;
  return async (url, init) => {
    const response = await recordedFetch(url, init);
    if (dropped || init.method !== 'POST' || !response.body) return response;
    dropped = true;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let seenText = false;
    const body = new ReadableStream({
      async pull(controller) {
        if (seenText) {
          await reader.cancel();
          controller.error(new TypeError('network error'));
          return;
        }
        const { done, value } = await reader.read();
        if (done) return controller.close();
        seenText = decoder.decode(value, { stream: true }).includes('"text-delta"');
        controller.enqueue(value);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
}

async function recordedFetch(url, init) {
  const response = await fetch(url, init);
  requests.push({
    method: init?.method ?? 'GET', url: String(url), status: response.status,
    contentType: response.headers.get('content-type'), protocol: response.headers.get('x-vercel-ai-ui-message-stream'),
  });
  return response;
}

function newChat({ messages = [], fetch = recordedFetch } = {}) {
  return new NodeChat({
    id: plan.chatId,
    messages,
    transport: new TappedTransport({ api: plan.api, headers: { Authorization: `Bearer ${plan.token}` }, fetch }),
    onFinish: ({ message, isAbort, isDisconnect, isError, finishReason }) => {
      finishes.push({ text: textOf(message), isAbort, isDisconnect, isError, finishReason: finishReason ?? null });
    },
  });
}

function textOf(message) {
  return message.parts.filter(part => part.type === 'text').map(part => part.text).join('');
}

function report(chat, extra = {}) {
  return {
    status: chat.status,
    error: chat.error ? { message: chat.error.message, statusCode: chat.error.statusCode ?? null } : null,
    messages: chat.messages.map(message => ({ id: message.id, role: message.role, text: textOf(message), metadata: message.metadata ?? null })),
    chunks, requests, finishes, ...extra,
  };
}

const scenarios = {
  async send() {
    const chat = newChat();
    await chat.sendMessage({ text: plan.text });
    return report(chat);
  },
  async stop() {
    const chat = newChat();
    firstDelta = () => { chat.stop(); };
    await chat.sendMessage({ text: plan.text });
    return report(chat);
  },
  async drop() {
    const chat = newChat({ fetch: fetchThatDrops() });
    await chat.sendMessage({ text: plan.text });
    const dropped = report(chat);
    await chat.resumeStream();
    return report(chat, { dropped: structuredClone(dropped) });
  },
  async reload() {
    const first = newChat({ fetch: fetchThatDrops() });
    await first.sendMessage({ text: plan.text });
    const dropped = report(first);
    const reloaded = newChat({ messages: first.messages.filter(message => message.role === 'user') });
    await reloaded.resumeStream();
    return report(reloaded, { dropped: structuredClone(dropped) });
  },
  async regenerate() {
    const chat = newChat();
    await chat.sendMessage({ text: plan.text });
    const answered = report(chat);
    await chat.regenerate();
    return report(chat, { answered: structuredClone(answered) });
  },
  async parse() {
    const stream = new TappedTransport({}).processResponseStream(new Response(plan.body).body);
    try {
      for await (const _ of stream);
      return { chunks, error: null };
    } catch (error) {
      return { chunks, error: String(error) };
    }
  },
  async resume() {
    const chat = newChat({ messages: plan.messages ?? [] });
    await chat.resumeStream();
    return report(chat);
  },
};

process.stdout.write(JSON.stringify(await scenarios[plan.scenario]()) + '\n');
