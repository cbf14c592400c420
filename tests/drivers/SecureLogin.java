// pgjdbc logs in with SCRAM-SHA-256 over TLS (sslmode=verify-full) against a
// running slicedb. Run with the single-file launcher:
//   java -cp /usr/share/java/postgresql.jar SecureLogin.java HOST PORT CA_FILE PASSWORD
// Exits non-zero with a message on the first failure.
import java.sql.*;
import java.util.Properties;

public class SecureLogin {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Connection connect(String[] args, String password) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", "postgres");
        p.setProperty("password", password);
        p.setProperty("sslmode", "verify-full");
        p.setProperty("sslrootcert", args[2]);
        return DriverManager.getConnection("jdbc:postgresql://" + args[0] + ":" + args[1] + "/slicedb", p);
    }

    public static void main(String[] args) throws Exception {
        try (Connection conn = connect(args, args[3]); Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT 40 + 2")) {
            check(rs.next() && rs.getInt(1) == 42, "query");
        }
        try (Connection conn = connect(args, "wrong")) {
            throw new AssertionError("a wrong password was accepted");
        } catch (SQLException e) {
            check("28P01".equals(e.getSQLState()), "wrong password: " + e.getSQLState() + " " + e.getMessage());
        }
        System.out.println("jdbc: ok");
    }
}
