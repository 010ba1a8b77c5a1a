// A small driver for Go's pkg/sftp client (the library inside rclone's
// sftp backend), for Ferry's client-matrix tests.
//
//	gosftp HOST PORT USER password|key SECRET < script
//
// The script has one operation per line, fields separated by tabs:
// put LOCAL REMOTE, get REMOTE LOCAL, reput LOCAL REMOTE, reget REMOTE
// LOCAL, mkdir D, ls D, rename A B, rm F, rmdir D, stat F. `ls` prints
// "ls<TAB>NAME<TAB>SIZE<TAB>d|f" per entry and then "end", `stat` prints
// "stat<TAB>SIZE". Uploads and downloads go through io.Copy, which uses
// the client's concurrent writes and reads, as rclone does.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gosftp: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 6 {
		fail("usage: gosftp HOST PORT USER password|key SECRET < script")
	}
	host, port, user, how, secret := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	var auth ssh.AuthMethod
	switch how {
	case "password":
		auth = ssh.Password(secret)
	case "key":
		pem, err := os.ReadFile(secret)
		if err != nil {
			fail("read key: %v", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			fail("parse key: %v", err)
		}
		auth = ssh.PublicKeys(signer)
	default:
		fail("auth must be password or key, not %q", how)
	}
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{auth},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         20 * time.Second,
	}
	conn, err := ssh.Dial("tcp", net.JoinHostPort(host, port), cfg)
	if err != nil {
		fail("connect: %v", err)
	}
	defer conn.Close()
	client, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true))
	if err != nil {
		fail("sftp: %v", err)
	}
	defer client.Close()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "" {
			continue
		}
		f := strings.Split(in.Text(), "\t")
		if err := run(client, f); err != nil {
			fail("%s: %v", strings.Join(f, " "), err)
		}
	}
}

func run(c *sftp.Client, f []string) error {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		fail("%s: missing argument %d", f[0], i)
		return ""
	}
	switch f[0] {
	case "put":
		return put(c, arg(1), arg(2), false)
	case "reput":
		return put(c, arg(1), arg(2), true)
	case "get":
		return get(c, arg(1), arg(2), false)
	case "reget":
		return get(c, arg(1), arg(2), true)
	case "mkdir":
		return c.Mkdir(arg(1))
	case "rename":
		return c.Rename(arg(1), arg(2))
	case "rm":
		return c.Remove(arg(1))
	case "rmdir":
		return c.RemoveDirectory(arg(1))
	case "stat":
		st, err := c.Stat(arg(1))
		if err != nil {
			return err
		}
		fmt.Printf("stat\t%d\n", st.Size())
		return nil
	case "ls":
		entries, err := c.ReadDir(arg(1))
		if err != nil {
			return err
		}
		for _, e := range entries {
			kind := "f"
			if e.IsDir() {
				kind = "d"
			}
			fmt.Printf("ls\t%s\t%d\t%s\n", e.Name(), e.Size(), kind)
		}
		fmt.Println("end")
		return nil
	}
	return fmt.Errorf("unknown operation %q", f[0])
}

func put(c *sftp.Client, local, remote string, resume bool) error {
	src, err := os.Open(local)
	if err != nil {
		return err
	}
	defer src.Close()
	var dst *sftp.File
	if resume {
		st, err := c.Stat(remote)
		if err != nil {
			return err
		}
		if dst, err = c.OpenFile(remote, os.O_WRONLY); err != nil {
			return err
		}
		if _, err = dst.Seek(st.Size(), io.SeekStart); err != nil {
			return err
		}
		if _, err = src.Seek(st.Size(), io.SeekStart); err != nil {
			return err
		}
	} else if dst, err = c.Create(remote); err != nil {
		return err
	}
	if _, err = io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func get(c *sftp.Client, remote, local string, resume bool) error {
	src, err := c.Open(remote)
	if err != nil {
		return err
	}
	defer src.Close()
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	var offset int64
	if resume {
		if st, err := os.Stat(local); err == nil {
			offset = st.Size()
		}
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	dst, err := os.OpenFile(local, flags, 0o644)
	if err != nil {
		return err
	}
	if _, err = src.Seek(offset, io.SeekStart); err != nil {
		dst.Close()
		return err
	}
	if _, err = io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
