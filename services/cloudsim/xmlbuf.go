package cloudsim

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// xmlBuf writes XML by hand for the largest responses (DescribeInstances pages): encoding/xml's
// reflection was most of the cost of a 1000-instance page. Element names are constants; text
// is escaped.
type xmlBuf struct{ bytes.Buffer }

// xmlWriter is a response with a hand-written XML writer.
type xmlWriter interface{ writeXMLTo(b *xmlBuf) }

// rawXML renders a response into a buffer of its own (tests compare it with encoding/xml).
func rawXML(r xmlWriter) []byte {
	var b xmlBuf
	r.writeXMLTo(&b)
	return b.Bytes()
}

// xmlBufs are response buffers reused between calls: a response is written from its buffer
// and the buffer returned, so a call does not allocate (and the GC does not collect) its
// response's bytes.
var xmlBufs = sync.Pool{New: func() any { return new(xmlBuf) }}

func getXMLBuf() *xmlBuf { return xmlBufs.Get().(*xmlBuf) }

// putXMLBuf returns a buffer to the pool; a very large one (a 1000-instance page) is dropped
// rather than kept for good.
func putXMLBuf(b *xmlBuf) {
	if b.Cap() > 1<<20 {
		return
	}
	b.Reset()
	xmlBufs.Put(b)
}

func (b *xmlBuf) open(name string) {
	b.WriteByte('<')
	b.WriteString(name)
	b.WriteByte('>')
}

func (b *xmlBuf) close(name string) {
	b.WriteString("</")
	b.WriteString(name)
	b.WriteByte('>')
}

func (b *xmlBuf) text(name, value string) {
	if plainText(value) {
		// Nothing to escape: the element is appended in one piece to the buffer's free
		// space, with no copy of the value beforehand.
		b.Grow(2*len(name) + len(value) + 5)
		e := b.AvailableBuffer()
		e = append(e, '<')
		e = append(e, name...)
		e = append(e, '>')
		e = append(e, value...)
		e = append(e, '<', '/')
		e = append(e, name...)
		e = append(e, '>')
		_, _ = b.Write(e)
		return
	}
	b.open(name)
	_ = xml.EscapeText(b, []byte(value))
	b.close(name)
}

// plainText tells whether xml.EscapeText would write s unchanged: printable ASCII without the
// five characters XML escapes.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if !xmlPlain[s[i]] {
			return false
		}
	}
	return true
}

// xmlPlain tells, for each byte value, whether it is printable ASCII other than the five
// characters XML escapes.
var xmlPlain = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = true
	}
	for _, c := range `"'&<>` {
		t[c] = false
	}
	return t
}()

func (b *xmlBuf) optText(name, value string) {
	if value != "" {
		b.text(name, value)
	}
}

func (b *xmlBuf) int(name string, v int) { b.text(name, strconv.Itoa(v)) }

func (b *xmlBuf) bool(name string, v bool) { b.text(name, strconv.FormatBool(v)) }

func (b *xmlBuf) tags(tags []ec2Tag) {
	b.open("tagSet")
	for _, t := range tags {
		b.open("item")
		b.text("key", t.Key)
		b.text("value", t.Value)
		b.close("item")
	}
	b.close("tagSet")
}

// writeInstance writes one instance item exactly as encoding/xml would from ec2Instance's tags.
func (b *xmlBuf) writeInstance(x *ec2Instance) {
	b.open("item")
	b.text("instanceId", x.InstanceID)
	b.text("imageId", x.ImageID)
	b.open("instanceState")
	b.int("code", x.State.Code)
	b.text("name", x.State.Name)
	b.close("instanceState")
	b.text("privateDnsName", x.PrivateDNSName)
	b.text("dnsName", x.DNSName)
	b.text("reason", x.Reason)
	b.int("amiLaunchIndex", x.AmiLaunchIndex)
	b.text("instanceType", x.InstanceType)
	b.text("launchTime", x.LaunchTime)
	b.open("placement")
	b.text("availabilityZone", x.AvailabilityZone)
	b.text("tenancy", x.Tenancy)
	b.close("placement")
	b.optText("platform", x.Platform)
	b.open("monitoring")
	b.text("state", x.Monitoring)
	b.close("monitoring")
	b.text("privateIpAddress", x.PrivateIPAddress)
	b.text("architecture", x.Architecture)
	b.text("rootDeviceType", x.RootDeviceType)
	b.text("rootDeviceName", x.RootDeviceName)
	if len(x.BlockDevices) > 0 {
		b.open("blockDeviceMapping")
		for _, d := range x.BlockDevices {
			b.open("item")
			b.text("deviceName", d.DeviceName)
			b.open("ebs")
			b.text("volumeId", d.VolumeID)
			b.text("status", d.Status)
			b.text("attachTime", d.AttachTime)
			b.bool("deleteOnTermination", d.DeleteOnTermination)
			b.close("ebs")
			b.close("item")
		}
		b.close("blockDeviceMapping")
	}
	b.text("virtualizationType", x.VirtualizationType)
	if len(x.Tags) > 0 {
		b.tags(x.Tags)
	}
	b.text("hypervisor", x.Hypervisor)
	b.bool("ebsOptimized", x.EbsOptimized)
	b.text("platformDetails", x.PlatformDetails)
	if x.StateReason != nil {
		b.open("stateReason")
		b.text("code", x.StateReason.Code)
		b.text("message", x.StateReason.Message)
		b.close("stateReason")
	}
	b.close("item")
}

// rawXML renders the DescribeInstances response.
func (r *describeInstancesResponse) rawXML() []byte { return rawXML(r) }

func (r *describeInstancesResponse) writeXMLTo(b *xmlBuf) {
	b.Grow(256 + 1500*len(r.Reservations))
	b.WriteString(xml.Header)
	b.WriteString(`<DescribeInstancesResponse xmlns="` + ec2Namespace + `">`)
	b.text("requestId", r.RequestID)
	b.open("reservationSet")
	for i := range r.Reservations {
		res := &r.Reservations[i]
		b.open("item")
		b.text("reservationId", res.ReservationID)
		b.text("ownerId", res.OwnerID)
		b.open("instancesSet")
		for j := range res.Instances {
			b.writeInstance(&res.Instances[j])
		}
		b.close("instancesSet")
		b.close("item")
	}
	b.close("reservationSet")
	b.optText("nextToken", r.NextToken)
	b.close("DescribeInstancesResponse")
}

func (b *xmlBuf) begin(root string, requestID string, size int) {
	b.Grow(size)
	b.WriteString(xml.Header)
	b.WriteByte('<')
	b.WriteString(root)
	b.WriteString(` xmlns="` + ec2Namespace + `">`)
	b.text("requestId", requestID)
}

// rawXML renders the DescribeSnapshots response.
func (r *describeSnapshotsResponse) rawXML() []byte { return rawXML(r) }

func (r *describeSnapshotsResponse) writeXMLTo(b *xmlBuf) {
	b.begin("DescribeSnapshotsResponse", r.RequestID, 256+600*len(r.Snapshots))
	b.open("snapshotSet")
	for i := range r.Snapshots {
		s := &r.Snapshots[i]
		b.open("item")
		b.text("snapshotId", s.SnapshotID)
		b.text("volumeId", s.VolumeID)
		b.text("status", s.Status)
		b.optText("statusMessage", s.StatusMessage)
		b.text("startTime", s.StartTime)
		b.text("progress", s.Progress)
		b.text("ownerId", s.OwnerID)
		b.int("volumeSize", s.VolumeSize)
		b.text("description", s.Description)
		b.bool("encrypted", s.Encrypted)
		b.text("storageTier", s.StorageTier)
		b.tags(s.Tags)
		b.close("item")
	}
	b.close("snapshotSet")
	b.optText("nextToken", r.NextToken)
	b.close("DescribeSnapshotsResponse")
}

// rawXML renders the CreateSnapshots response.
func (r *createSnapshotsResponse) rawXML() []byte { return rawXML(r) }

func (r *createSnapshotsResponse) writeXMLTo(b *xmlBuf) {
	b.begin("CreateSnapshotsResponse", r.RequestID, 256+500*len(r.Snapshots))
	b.open("snapshotSet")
	for i := range r.Snapshots {
		s := &r.Snapshots[i]
		b.open("item")
		b.text("snapshotId", s.SnapshotID)
		b.text("volumeId", s.VolumeID)
		b.text("state", s.State)
		b.text("startTime", s.StartTime)
		b.text("progress", s.Progress)
		b.text("ownerId", s.OwnerID)
		b.int("volumeSize", s.VolumeSize)
		b.text("description", s.Description)
		b.bool("encrypted", s.Encrypted)
		b.tags(s.Tags)
		b.close("item")
	}
	b.close("snapshotSet")
	b.close("CreateSnapshotsResponse")
}

// rawXML renders the DescribeInstanceStatus response.
func (r *describeInstanceStatusResponse) rawXML() []byte { return rawXML(r) }

func (r *describeInstanceStatusResponse) writeXMLTo(b *xmlBuf) {
	b.begin("DescribeInstanceStatusResponse", r.RequestID, 256+500*len(r.Statuses))
	b.open("instanceStatusSet")
	summary := func(name string, s *ec2StatusSummary) {
		b.open(name)
		b.text("status", s.Status)
		b.open("details")
		for _, d := range s.Details {
			b.open("item")
			b.text("name", d.Name)
			b.text("status", d.Status)
			b.close("item")
		}
		b.close("details")
		b.close(name)
	}
	for i := range r.Statuses {
		s := &r.Statuses[i]
		b.open("item")
		b.text("instanceId", s.InstanceID)
		b.text("availabilityZone", s.AvailabilityZone)
		b.open("instanceState")
		b.int("code", s.State.Code)
		b.text("name", s.State.Name)
		b.close("instanceState")
		summary("systemStatus", &s.SystemStatus)
		summary("instanceStatus", &s.InstanceStatus)
		b.close("item")
	}
	b.close("instanceStatusSet")
	b.optText("nextToken", r.NextToken)
	b.close("DescribeInstanceStatusResponse")
}

// rawXML renders a response that only says return=true (CreateTags, DeleteTags, ...).
func (r *ec2ReturnResponse) rawXML() []byte { return rawXML(r) }

func (r *ec2ReturnResponse) writeXMLTo(b *xmlBuf) {
	b.begin(r.XMLName.Local, r.RequestID, 256)
	b.bool("return", r.Return)
	b.close(r.XMLName.Local)
}

// renderedXML is a response rendered while the call read the world (DescribeInstances): the
// EC2 writer sends its document as it is and returns the buffer to the pool.
type renderedXML struct{ doc *xmlBuf }

// timeText writes an element holding t as xmlTime formats it, without a string in between.
func (b *xmlBuf) timeText(name string, t time.Time) {
	b.open(name)
	b.Write(appendXMLTime(b.AvailableBuffer(), t))
	b.close(name)
}

// writeInstanceOf writes one instance item straight from the instance: the same bytes as
// writeInstance(instanceXML(in)), without the intermediate strings and slices. It reads the
// instance, so it runs under the world's lock (shared or exclusive).
func (b *xmlBuf) writeInstanceOf(in *instance) {
	info := osCatalog[in.OS]
	stopped := in.State == "stopped" || in.State == "stopping"
	b.open("item")
	b.text("instanceId", in.ID)
	b.text("imageId", in.ImageID)
	b.open("instanceState")
	b.int("code", stateCodes[in.State])
	b.text("name", in.State)
	b.close("instanceState")
	if plainText(in.PrivateIP) {
		b.open("privateDnsName")
		b.WriteString("ip-")
		for i := 0; i < len(in.PrivateIP); i++ {
			if c := in.PrivateIP[i]; c == '.' {
				b.WriteByte('-')
			} else {
				b.WriteByte(c)
			}
		}
		b.WriteString(".ec2.internal")
		b.close("privateDnsName")
	} else {
		b.text("privateDnsName", "ip-"+strings.ReplaceAll(in.PrivateIP, ".", "-")+".ec2.internal")
	}
	b.WriteString("<dnsName></dnsName>")
	if stopped {
		b.open("reason")
		b.WriteString("User initiated (")
		b.Write(in.StateSince.UTC().AppendFormat(b.AvailableBuffer(), "2006-01-02 15:04:05 MST"))
		b.WriteString(")")
		b.close("reason")
	} else {
		b.WriteString("<reason></reason>")
	}
	b.WriteString("<amiLaunchIndex>0</amiLaunchIndex>")
	b.text("instanceType", in.InstanceType)
	b.timeText("launchTime", in.LaunchTime)
	b.open("placement")
	b.text("availabilityZone", in.AZ)
	b.WriteString("<tenancy>default</tenancy>")
	b.close("placement")
	if info.Platform == "Windows" {
		b.WriteString("<platform>windows</platform>")
	}
	b.WriteString("<monitoring><state>disabled</state></monitoring>")
	b.text("privateIpAddress", in.PrivateIP)
	b.WriteString("<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>")
	root := ""
	if len(in.Volumes) > 0 {
		root = in.Volumes[0].Device
	}
	b.text("rootDeviceName", root)
	if in.State != "terminated" && len(in.Volumes) > 0 {
		b.open("blockDeviceMapping")
		for _, v := range in.Volumes {
			b.open("item")
			b.text("deviceName", v.Device)
			b.open("ebs")
			b.text("volumeId", v.ID)
			b.WriteString("<status>attached</status>")
			b.timeText("attachTime", v.AttachTime)
			b.WriteString("<deleteOnTermination>true</deleteOnTermination>")
			b.close("ebs")
			b.close("item")
		}
		b.close("blockDeviceMapping")
	}
	b.WriteString("<virtualizationType>hvm</virtualizationType>")
	if len(in.Tags) > 0 {
		var stack [16]string
		keys := stack[:0]
		for k := range in.Tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.open("tagSet")
		for _, k := range keys {
			b.open("item")
			b.text("key", k)
			b.text("value", in.Tags[k])
			b.close("item")
		}
		b.close("tagSet")
	}
	b.WriteString("<hypervisor>xen</hypervisor><ebsOptimized>false</ebsOptimized>")
	b.text("platformDetails", info.PlatformDetails)
	if stopped {
		b.WriteString("<stateReason><code>Client.UserInitiatedShutdown</code>" +
			"<message>Client.UserInitiatedShutdown: User initiated shutdown</message></stateReason>")
	}
	b.close("item")
}

// writeReservationOf writes the reservation item of one instance (one reservation per instance).
func (b *xmlBuf) writeReservationOf(seed int64, in *instance) {
	sum := hashBytes(seed, "reservation", in.ID)
	var h [2 * len(sum)]byte
	hex.Encode(h[:], sum[:])
	b.WriteString("<item><reservationId>r-")
	b.Write(h[:17]) // hashHex(seed, 17, "reservation", id)
	b.WriteString("</reservationId>")
	b.text("ownerId", in.Account)
	b.open("instancesSet")
	b.writeInstanceOf(in)
	b.close("instancesSet")
	b.close("item")
}
