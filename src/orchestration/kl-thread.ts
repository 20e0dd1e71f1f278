/** Worker-thread entry of KlThreads (kl-threads.ts): scores the jobs it is sent, one at a time. */
import {parentPort} from 'node:worker_threads'

import {klOfQueries} from '../science/kl.js'
import type {KlThreadJob, KlThreadReply} from './kl-threads.js'

const port = parentPort
if (!port) throw new Error('kl-thread.js runs as a worker thread of KlThreads')
port.on('message', (job: KlThreadJob) => {
  let reply: KlThreadReply
  try {
    const kl = klOfQueries(job.logprobs, job.queries, job.rows, job.vocab, job.options)
    reply = {id: job.id, kl}
    port.postMessage(reply, [kl.buffer])
  } catch (error) {
    reply = {id: job.id, error: error instanceof Error ? error.message : String(error)}
    port.postMessage(reply)
  }
})
