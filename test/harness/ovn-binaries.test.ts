/**
 * ovn-binaries.ts without OVS: the host's binaries are the plain commands, a
 * root's symlinks resolve inside the root, and an unusable OVN_TEST_ROOT says
 * what is wrong and how to fix it rather than falling back to the host's.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { binariesFor, hostBinaries, resolveInRoot } from './ovn-binaries.js';
import { makeTempDir, removeDir, stopAll, trackDir } from './process.js';

t.teardown(stopAll);

t.test('no root: the host\'s commands by name and its schema files, as always', async (t) => {
  t.equal(binariesFor(undefined), hostBinaries);
  t.equal(binariesFor(''), hostBinaries, 'an empty OVN_TEST_ROOT is no root');
  t.same(hostBinaries.command('ovn-northd', ['--version']), { cmd: 'ovn-northd', args: ['--version'] });
  t.equal(hostBinaries.schema('nb'), '/usr/share/ovn/ovn-nb.ovsschema');
  t.equal(hostBinaries.schema('vswitch'), '/usr/share/openvswitch/vswitch.ovsschema');
});

t.test('symlinks resolve inside the root, absolute ones too (update-alternatives)', async (t) => {
  const root = await makeTempDir('fakeroot');
  trackDir(root);
  await mkdir(path.join(root, 'usr/sbin'), { recursive: true });
  await mkdir(path.join(root, 'usr/lib/openvswitch-switch'), { recursive: true });
  await mkdir(path.join(root, 'etc/alternatives'), { recursive: true });
  await writeFile(path.join(root, 'usr/lib/openvswitch-switch/ovs-vswitchd'), '');
  await symlink('/usr/lib/openvswitch-switch/ovs-vswitchd', path.join(root, 'etc/alternatives/ovs-vswitchd'));
  await symlink('/etc/alternatives/ovs-vswitchd', path.join(root, 'usr/sbin/ovs-vswitchd'));
  await symlink('usr/lib', path.join(root, 'lib'));
  await symlink('../../..', path.join(root, 'usr/lib/up'));
  t.equal(resolveInRoot(root, 'usr/sbin/ovs-vswitchd'), path.join(root, 'usr/lib/openvswitch-switch/ovs-vswitchd'));
  t.equal(resolveInRoot(root, 'lib/openvswitch-switch/ovs-vswitchd'), path.join(root, 'usr/lib/openvswitch-switch/ovs-vswitchd'), 'relative link');
  t.equal(resolveInRoot(root, 'usr/lib/up/etc'), path.join(root, 'etc'), '.. stops at the root');
  await symlink('loop', path.join(root, 'loop'));
  t.throws(() => resolveInRoot(root, 'loop'), /too many symlinks/);
  await removeDir(root);
});

t.test('an unusable root fails loudly, naming the fix', async (t) => {
  const root = await makeTempDir('fakeroot');
  trackDir(root);
  t.throws(() => binariesFor(path.join(root, 'absent')), /OVN_TEST_ROOT=.*absent is set but unusable: no \.complete .*scripts\/debian13-ovn-root\.sh .*unset OVN_TEST_ROOT/);
  await writeFile(path.join(root, '.complete'), '');
  t.throws(() => binariesFor(root), /unusable: usr\/lib\/x86_64-linux-gnu\/ld-linux-x86-64\.so\.2 is missing/);
  await removeDir(root);
});
