// A small driver for JSch (com.jcraft.jsch, the SSH library inside many
// Java tools and B2B transfer jobs), for Ferry's client-matrix tests.
//
//   java -cp jsch.jar:. JschClient HOST PORT USER password|key SECRET < script
//
// The script language is the one of gosftp.go: one operation per line,
// fields separated by tabs (put, get, reput, reget, mkdir, ls, rename, rm,
// rmdir, stat). reput and reget use ChannelSftp.RESUME. JSCH_KEX in the
// environment sets the key exchanges offered.
import com.jcraft.jsch.ChannelSftp;
import com.jcraft.jsch.JSch;
import com.jcraft.jsch.Session;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Vector;

public class JschClient {
    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: JschClient HOST PORT USER password|key SECRET < script");
            System.exit(2);
        }
        JSch jsch = new JSch();
        if (args[3].equals("key")) {
            jsch.addIdentity(args[4]);
        }
        Session session = jsch.getSession(args[2], args[0], Integer.parseInt(args[1]));
        session.setConfig("StrictHostKeyChecking", "no");
        // JSCH_KEX picks the key exchanges (JSch's own config key "kex").
        String kex = System.getenv("JSCH_KEX");
        if (kex != null && !kex.isEmpty()) {
            session.setConfig("kex", kex);
        }
        if (args[3].equals("password")) {
            session.setPassword(args[4]);
            session.setConfig("PreferredAuthentications", "password");
        } else {
            session.setConfig("PreferredAuthentications", "publickey");
        }
        String line = null;
        try {
            session.connect(20000);
            ChannelSftp sftp = (ChannelSftp) session.openChannel("sftp");
            sftp.connect(20000);
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) continue;
                run(sftp, line.split("\t", -1));
            }
            sftp.disconnect();
            session.disconnect();
        } catch (Exception e) {
            System.err.println("jsch: " + (line == null ? "connect" : line.replace('\t', ' ')) + ": " + e);
            System.exit(1);
        }
    }

    static void run(ChannelSftp c, String[] f) throws Exception {
        switch (f[0]) {
            case "put": c.put(f[1], f[2]); break;
            case "reput": c.put(f[1], f[2], ChannelSftp.RESUME); break;
            case "get": c.get(f[1], f[2]); break;
            case "reget": c.get(f[1], f[2], null, ChannelSftp.RESUME); break;
            case "mkdir": c.mkdir(f[1]); break;
            case "rename": c.rename(f[1], f[2]); break;
            case "rm": c.rm(f[1]); break;
            case "rmdir": c.rmdir(f[1]); break;
            case "stat": System.out.println("stat\t" + c.stat(f[1]).getSize()); break;
            case "ls": {
                Vector<?> entries = c.ls(f[1]);
                for (Object o : entries) {
                    ChannelSftp.LsEntry e = (ChannelSftp.LsEntry) o;
                    String name = e.getFilename();
                    if (name.equals(".") || name.equals("..")) continue;
                    System.out.println("ls\t" + name + "\t" + e.getAttrs().getSize() + "\t"
                            + (e.getAttrs().isDir() ? "d" : "f"));
                }
                System.out.println("end");
                break;
            }
            default: throw new IllegalArgumentException("unknown operation " + f[0]);
        }
    }
}
