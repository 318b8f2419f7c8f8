/**
 * bench/port-phases: where the time goes between writing a port to NB and
 * the port being ready, at 0 and at 10,000 ports in NB (single-chassis
 * OVN): NB transaction, veth + OVS port, SB Port_Binding (ovn-northd),
 * local ovn-installed (ovn-controller), NB up (ovn-northd again).
 *
 *   npm run bench:port-phases
 */
import { performance } from 'node:perf_hooks';
import { OvsdbClient } from '../src/ovsdb/index.js';
import { startOvnStack } from '../test/harness/ovn-stack.js';
import { run } from '../test/harness/process.js';

const stack = await startOvnStack();
const nb = await OvsdbClient.connect({ remote: stack.nbRemote, database: 'OVN_Northbound', tables: ['Logical_Switch', 'Logical_Switch_Port'] });
const sb = await OvsdbClient.connect({ remote: stack.sb.unixRemote, database: 'OVN_Southbound', tables: ['Port_Binding'], indexes: { Port_Binding: { columns: ['logical_port'] } } });
const ovs = await OvsdbClient.connect({ remote: stack.ovsRemote, database: 'Open_vSwitch', tables: ['Interface'], indexes: { Interface: { columns: ['name'] } } });
await nb.transaction((tx) => { tx.insert('Logical_Switch', { name: 'x' }); });
async function fill(n: number) {
  await nb.transaction((tx) => { tx.insert('Logical_Switch', { name: 'fill' }); });
  for (let d = 0; d < n; d += 1000) {
    await nb.transaction((tx) => {
      const ps = [];
      for (let i = d; i < Math.min(n, d + 1000); i++) ps.push(tx.insert('Logical_Switch_Port', { name: `f${i}`, addresses: ['unknown'] }));
      tx.mutate('Logical_Switch', [['name', '==', 'fill']], [['ports', 'insert', ps]]);
    });
  }
}
let k = 0;
async function one(label: string) {
  const name = `p${k++}`;
  const mac = `0a:58:0a:00:00:${(k + 16).toString(16)}`;
  const t0 = performance.now();
  await nb.transaction((tx) => {
    const p = tx.insert('Logical_Switch_Port', { name, addresses: [`${mac} 10.0.0.${k + 10}`], port_security: [`${mac} 10.0.0.${k + 10}`] });
    tx.mutate('Logical_Switch', [['name', '==', 'x']], [['ports', 'insert', [p]]]);
  });
  const tNb = performance.now();
  const pbP = sb.replica.waitFor(() => sb.replica.findOne('Port_Binding', 'logical_port', name) ? performance.now() : undefined, { timeoutMs: 20000 });
  await run('ip', ['link', 'add', `v${name}`, 'up', 'type', 'veth', 'peer', 'name', `w${name}`]);
  await stack.vsctl('add-port', 'br-int', `v${name}`, '--', 'set', 'Interface', `v${name}`, `external_ids:iface-id=${name}`);
  const tPlug = performance.now();
  const inst = ovs.replica.waitFor(() => { const i = ovs.replica.findOne('Interface', 'name', `v${name}`); return i && (i.external_ids as Map<string,string>).get('ovn-installed') === 'true' ? performance.now() : undefined; }, { timeoutMs: 20000 });
  const up = nb.replica.waitFor(() => [...nb.replica.rows('Logical_Switch_Port')].find((r) => r.name === name && r.up === true) ? performance.now() : undefined, { timeoutMs: 20000 });
  const [tPb, tInst, tUp] = await Promise.all([pbP, inst, up]);
  console.log(`${label}: nb=${(tNb - t0).toFixed(1)} plug=${(tPlug - tNb).toFixed(1)} portBinding=${(tPb - t0).toFixed(1)} ovnInstalled=${(tInst - t0).toFixed(1)} up=${(tUp - t0).toFixed(1)}`);
  await run('ip', ['link', 'del', `v${name}`]);
}
for (let i = 0; i < 4; i++) await one('0 ports');
await fill(10000);
await new Promise((r) => setTimeout(r, 3000));
for (let i = 0; i < 4; i++) await one('10000 ports');
await nb.close(); await sb.close(); await ovs.close();
await stack.stop();
